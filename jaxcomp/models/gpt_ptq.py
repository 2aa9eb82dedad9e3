"""Post-training quantization helpers for the library GPT, on top of :mod:`gpt_blocks`.

* :func:`activation_stats` — per linear input: per-channel ``max |x|`` and the
  moments for the kurtosis of its values, from the float model's calibration pass;
* :func:`smooth_gpt` — SmoothQuant: per-channel scales ``s`` migrate the q/k/v and
  up/gate inputs' outliers into their kernels (``1/s`` folded into ``ln1`` / ``ln2``);
* :func:`rotate_gpt` — QuaRot-style: norms folded, stream writers centred, the
  residual stream rotated by a random Hadamard matrix, online Hadamards before
  ``o`` and ``down``; the float function is unchanged;
* :func:`w8a8_params` / :func:`static_tap` — W8A8: per-channel int8 kernels and static
  per-tensor activation scales from calibration maxima.

All return pure-dict params and, for the rotated model, a new
:class:`~jaxcomp.models.gpt_blocks.GPTSpec`; evaluate them with
:func:`~jaxcomp.models.gpt_blocks.tapped_model`.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp.models import get_model, gpt_blocks as gb
    >>> model = get_model("gpt", input_shape=(16,), num_layers=1, width=32, num_heads=4)
    >>> params, _ = model.init(jax.random.key(0), None)
    >>> spec = gb.gpt_spec(model)
    >>> tokens = jnp.arange(32).reshape(2, 16)
    >>> rspec, rparams = rotate_gpt(spec, params, jax.random.key(1))
    >>> bool(jnp.allclose(gb.forward(rspec, rparams, tokens), gb.forward(spec, params, tokens),
    ...                   atol=1e-4))
    True
    >>> st = activation_stats(spec, params, [tokens])
    >>> sp = smooth_gpt(spec, params, st, alpha=0.5)
    >>> bool(jnp.allclose(gb.forward(spec, sp, tokens), gb.forward(spec, params, tokens),
    ...                   atol=1e-4))
    True
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcomp.models import gpt_blocks as gb
from jaxcomp.quant.calib.actquant import per_channel_weight, per_tensor, per_tensor_scale
from jaxcomp.quant.calib.rotate import center_writer, fold_norm_into_linear, random_hadamard
from jaxcomp.quant.calib.smooth import fold_smoothing, smooth_scales


def _copy(tree: Any) -> Any:
    return jax.tree.map(lambda a: jnp.asarray(a), tree)


@functools.lru_cache(maxsize=16)
def _stats_step(spec: gb.GPTSpec):
    def step(p, tokens):
        out = {}

        def tap(name, v):
            v32 = v.astype(jnp.float32).reshape(-1, v.shape[-1])
            out[name] = {"absmax": jnp.max(jnp.abs(v32), axis=0),
                         "moments": jnp.stack([jnp.sum(v32 ** k) for k in (1, 2, 3, 4)]),
                         "count": jnp.asarray(v32.size, jnp.float32)}
            return v

        gb.forward(spec, p, tokens, tap)
        return out
    return jax.jit(step)


def activation_stats(spec: gb.GPTSpec, params: Any, token_batches: Sequence[jax.Array]
                     ) -> dict[str, dict[str, np.ndarray]]:
    """``{kernel path: {"absmax" (in,), "moments" (Σx, Σx², Σx³, Σx⁴; float64), "count"}}``
    of every linear input over the token batches (float model, taps identity)."""
    p = gb.pure(params)
    step = _stats_step(spec)
    acc: dict[str, dict[str, np.ndarray]] = {}
    for tb in token_batches:
        got = jax.device_get(step(p, jnp.asarray(tb, jnp.int32)))
        for name, s in got.items():
            if name not in acc:
                acc[name] = {"absmax": np.asarray(s["absmax"], np.float64),
                             "moments": np.asarray(s["moments"], np.float64),
                             "count": float(s["count"])}
            else:
                a = acc[name]
                a["absmax"] = np.maximum(a["absmax"], s["absmax"])
                a["moments"] = a["moments"] + np.asarray(s["moments"], np.float64)
                a["count"] += float(s["count"])
    return acc


def outlier_summary(stats: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Per linear input: ``max/median`` of the per-channel ``max |x|`` and the kurtosis
    (``E[(x-μ)^4] / σ^4``; 3 for a Gaussian) of its values.

    Example:
        >>> import numpy as np
        >>> x = np.random.default_rng(0).normal(size=(10000, 4))
        >>> st = {"l": {"absmax": np.abs(x).max(0), "count": x.size,
        ...             "moments": np.array([np.sum(x ** k) for k in (1, 2, 3, 4)])}}
        >>> round(outlier_summary(st)["l"]["kurtosis"], 1)
        3.0
    """
    out = {}
    for name, s in stats.items():
        n = float(s["count"])
        m1, m2, m3, m4 = (np.asarray(s["moments"], np.float64) / n).tolist()
        var = m2 - m1 * m1
        c4 = m4 - 4 * m1 * m3 + 6 * m1 * m1 * m2 - 3 * m1 ** 4
        amax = np.asarray(s["absmax"], np.float64)
        med = float(np.median(amax))
        out[name] = {"max_over_median": float(amax.max() / med) if med > 0 else float("inf"),
                     "kurtosis": float(c4 / var ** 2) if var > 0 else float("nan")}
    return out


def _readers(spec: gb.GPTSpec) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    mlp = ("up", "gate") if spec.mlp == "swiglu" else ("up",)
    return (("ln1", "attn", ("q", "k", "v")), ("ln2", "mlp", mlp))


def smooth_gpt(spec: gb.GPTSpec, params: Any, stats: Mapping[str, Mapping[str, Any]], *,
               alpha: float = 0.5) -> dict:
    """SmoothQuant on every block: ``s`` from the ``ln1`` (q/k/v) and ``ln2`` (up/gate)
    outputs' channel maxima and the readers' kernels; ``ln`` scale and bias ``/ s``,
    kernels ``diag(s) W``. The float function is unchanged (``o`` and ``down`` inputs
    have no foldable producer and are left as they are)."""
    p = _copy(gb.pure(params))
    for i in range(spec.num_layers):
        blk = p["blocks"][i]
        for ln, sub, names in _readers(spec):
            first = f"blocks/{i}/{sub}/{names[0]}/kernel"
            w = jnp.concatenate([blk[sub][n]["kernel"] for n in names], axis=1)
            s = smooth_scales(jnp.asarray(stats[first]["absmax"], jnp.float32), w, alpha)
            blk[ln] = {k: v / s for k, v in blk[ln].items()}
            for n in names:
                blk[sub][n]["kernel"] = fold_smoothing(blk[sub][n]["kernel"], s)
    return p


def rotate_gpt(spec: gb.GPTSpec, params: Any, key: jax.Array) -> tuple[gb.GPTSpec, dict]:
    """The same function with a Hadamard-rotated residual stream (QuaRot).

    Every LayerNorm's scale/shift is folded into its readers (the tied head becomes
    an untied ``head``), every stream writer (embeddings, ``o``, ``down``) is centred so
    the LayerNorms become RMSNorms, the stream is rotated by ``Q = random_hadamard(D,
    key)`` (writers ``W Q``, readers ``Qᵀ W``), and ``o`` / ``down`` read inputs rotated
    online by a normalized Hadamard ``H`` (kernels ``Hᵀ W``)."""
    p = _copy(gb.pure(params))
    d = p["embed"]["embedding"].shape[1]
    q = random_hadamard(d, key)
    head = p["embed"]["embedding"].T if "head" not in p else p["head"]["kernel"]
    hk, hb = fold_norm_into_linear(p["ln_f"]["scale"], p["ln_f"].get("bias"), head,
                                   p.get("head", {}).get("bias"))
    p["head"] = {"kernel": q.T @ hk, "bias": hb}
    p["ln_f"] = {}
    p["embed"]["embedding"] = center_writer(p["embed"]["embedding"])[0] @ q
    if spec.learned_pos:
        p["pos"]["embedding"] = center_writer(p["pos"]["embedding"])[0] @ q
    for i in range(spec.num_layers):
        blk = p["blocks"][i]
        for ln, sub, names in _readers(spec):
            for n in names:
                lin = blk[sub][n]
                k, b = fold_norm_into_linear(blk[ln]["scale"], blk[ln].get("bias"),
                                             lin["kernel"], lin.get("bias"))
                blk[sub][n] = {"kernel": q.T @ k, "bias": b}
            blk[ln] = {}
        for sub, n in (("attn", "o"), ("mlp", "down")):
            lin = blk[sub][n]
            w, b = center_writer(lin["kernel"], lin.get("bias"))
            h = jnp.asarray(gb._hadamard(w.shape[0]))
            blk[sub][n] = {"kernel": h.T @ w @ q, **({} if b is None else {"bias": b @ q})}
    return spec._replace(norm="rms", online_hadamard=True), p


def w8a8_params(spec: gb.GPTSpec, params: Any, bits: int = 8) -> dict:
    """Every attention / MLP kernel fake-quantized symmetric per output channel."""
    p = _copy(gb.pure(params))
    ks = gb.kernels(gb.gpt_blocks(None, p, spec))
    return gb.write_back(p, {path: per_channel_weight(w, bits) for path, w in ks.items()})


def static_tap(stats: Mapping[str, Mapping[str, Any]], bits: int = 8):
    """A tap quantizing each linear input with one static per-tensor scale from its
    calibration maximum (SmoothQuant's W8A8 activations)."""
    scales = {n: per_tensor_scale(jnp.asarray(s["absmax"], jnp.float32), bits)
              for n, s in stats.items()}

    def tap(name, x):
        return per_tensor(x, scales[name], bits) if name in scales else x
    return tap


__all__ = ["activation_stats", "outlier_summary", "rotate_gpt", "smooth_gpt", "static_tap",
           "w8a8_params"]
