"""Importance scores of a GPT's heads, key/value groups, MLP neurons, residual channels
and blocks.

``method="activation"`` (Minitron, Muralidharan et al. 2024) runs the calibration tokens
through the GPT's pure forward (:func:`jaxcomp.models.gpt_blocks.forward`, the
calibration pass's blocks) with a ``tap`` on the linear inputs, batch by batch, and
keeps only running sums:

* ``heads[i, h]``: mean over tokens of the L2 norm of head ``h``'s attention output
  (the ``o`` input's slice ``h*hd … h*hd+hd-1``); ``kv_groups[i, k]``: the sum over
  the query heads sharing key/value head ``k``;
* ``neurons[i, j]``: mean over tokens of ``|a_j|``, ``a`` the MLP hidden activation
  (``gelu(up x)`` or ``silu(gate x) * up x``, the ``down`` input);
* ``channels[c]``: Minitron's LayerNorm-output aggregation: the sum over every
  LayerNorm (``ln1``/``ln2`` of each block and ``ln_f``) of the mean over tokens of
  ``|LN(x)_c|``;
* ``blocks[i]``: Minitron's block importance ``1 - cos(x_in, x_out)``, averaged over
  tokens (a block that barely turns the residual stream is unimportant).

``"magnitude"`` uses the weights only (``heads``: Frobenius norm of the head's ``o``
rows; ``neurons``: ``‖up column‖·‖down row‖``; ``channels``: ``‖embed column‖``;
``blocks``: ``‖o‖ + ‖down‖``); ``"random"`` draws uniform scores from ``seed`` (a
control). Block importance by the loss change is :func:`~jaxcomp.prune.transformer.
depth.block_importance`.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp.models import get_model
    >>> model = get_model("gpt", input_shape=(16,), num_layers=2, width=32, num_heads=4,
    ...                   num_kv_heads=2)
    >>> params, _ = model.init(jax.random.key(0), None)
    >>> imp = importance(model, params, jnp.arange(64).reshape(4, 16) % 256)
    >>> imp.method, imp.heads.shape, imp.kv_groups.shape, imp.neurons.shape
    ('activation', (2, 4), (2, 2), (2, 128))
    >>> bool((imp.channels > 0).all()), imp.blocks.shape
    (True, (2,))
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxcomp.core.errors import ConfigError, check_choice
from jaxcomp.models import gpt_blocks as gb
from jaxcomp.models.gpt_target import batches, check_tokens, resolve

METHODS = ("activation", "magnitude", "random")


class Importance(NamedTuple):
    """Scores (higher = more important), float64 numpy arrays: ``heads`` (L, num_heads),
    ``kv_groups`` (L, num_kv_heads), ``neurons`` (L, mlp_hidden), ``channels`` (width,),
    ``blocks`` (L,); and the ``method`` that made them."""

    heads: np.ndarray
    kv_groups: np.ndarray
    neurons: np.ndarray
    channels: np.ndarray
    blocks: np.ndarray
    method: str


def shapes(cfg: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The shape of each :class:`Importance` array for a GPT config."""
    n = cfg["num_layers"]
    return {"heads": (n, cfg["num_heads"]), "kv_groups": (n, cfg["num_kv_heads"]),
            "neurons": (n, cfg["mlp_hidden"]), "channels": (cfg["width"],), "blocks": (n,)}


def check_importance(imp: Any, cfg: dict[str, Any], what: str) -> Importance:
    """ConfigError unless ``imp`` is an :class:`Importance` of this model's shape."""
    if not isinstance(imp, Importance):
        raise ConfigError(f"{what}: got {type(imp).__name__}; expected the Importance of "
                          "jaxcomp.prune.transformer.importance(...)")
    for name, want in shapes(cfg).items():
        got = tuple(np.shape(getattr(imp, name)))
        if got != want:
            raise ConfigError(f"{what}.{name}: shape {got}; this model needs {want} "
                              "(importance computed on a model of another shape?)")
    return imp


def _group(heads: np.ndarray, kv: int) -> np.ndarray:
    return heads.reshape(heads.shape[0], kv, -1).sum(-1)


@functools.partial(jax.jit, static_argnums=0)
def _sums(spec: gb.GPTSpec, p: Any, tokens: jax.Array) -> dict[str, jax.Array]:
    """Per-batch sums of the activation statistics (divide by the token count)."""
    got: dict[str, jax.Array] = {}

    def tap(name, v):
        got[name] = v
        return v

    absum = lambda v: jnp.abs(v.astype(jnp.float32)).sum((0, 1))  # noqa: E731
    states = gb.block_states(spec, p, tokens, tap)
    heads, neurons, cos = [], [], []
    chans = jnp.zeros(states[0].shape[-1], jnp.float32)
    for i, (x, y) in enumerate(zip(states[:-1], states[1:], strict=True)):
        pre = f"blocks/{i}/"
        u = got[pre + "attn/o/kernel"].astype(jnp.float32)
        u = u.reshape(*u.shape[:2], spec.num_heads, spec.head_dim)
        heads.append(jnp.sqrt(jnp.sum(u * u, -1)).sum((0, 1)))
        neurons.append(absum(got[pre + "mlp/down/kernel"]))
        chans = chans + absum(got[pre + "attn/q/kernel"]) + absum(got[pre + "mlp/up/kernel"])
        a, b = x.astype(jnp.float32), y.astype(jnp.float32)
        c = jnp.sum(a * b, -1) / jnp.maximum(jnp.linalg.norm(a, axis=-1)
                                             * jnp.linalg.norm(b, axis=-1), 1e-12)
        cos.append(c.sum())
    chans = chans + absum(gb.norm_forward(p["ln_f"], states[-1], spec))
    return {"heads": jnp.stack(heads), "neurons": jnp.stack(neurons), "channels": chans,
            "cos": jnp.stack(cos)}


def _activation(t: Any, tokens: jax.Array, batch_size: int) -> Importance:
    total, n = None, 0
    for xb in batches(tokens, batch_size):
        s = _sums(t.spec, t.params, xb)
        total = s if total is None else jax.tree.map(jnp.add, total, s)
        n += xb.shape[0] * xb.shape[1]
    m = {k: np.asarray(v, np.float64) / n for k, v in total.items()}
    return Importance(m["heads"], _group(m["heads"], t.config["num_kv_heads"]), m["neurons"],
                      m["channels"], 1.0 - m["cos"], "activation")


def _magnitude(t: Any) -> Importance:
    cfg, p = t.config, t.params
    norm = lambda a, axis=None: np.sqrt(np.sum(np.square(np.asarray(a, np.float64)),  # noqa
                                               axis=axis))
    heads, neurons, blocks = [], [], []
    for i in range(cfg["num_layers"]):
        b = p["blocks"][i]
        o = np.asarray(b["attn"]["o"]["kernel"]).reshape(cfg["num_heads"], cfg["head_dim"], -1)
        heads.append(norm(o, (1, 2)))
        neurons.append(norm(b["mlp"]["up"]["kernel"], 0) * norm(b["mlp"]["down"]["kernel"], 1))
        blocks.append(norm(b["attn"]["o"]["kernel"]) + norm(b["mlp"]["down"]["kernel"]))
    h = np.stack(heads)
    return Importance(h, _group(h, cfg["num_kv_heads"]), np.stack(neurons),
                      norm(p["embed"]["embedding"], 0), np.asarray(blocks), "magnitude")


def _random(cfg: dict[str, Any], seed: int) -> Importance:
    rng = np.random.default_rng(seed)
    s = {k: rng.uniform(size=v) for k, v in shapes(cfg).items()}
    return Importance(s["heads"], s["kv_groups"], s["neurons"], s["channels"], s["blocks"],
                      "random")


def importance(model: Any, params: Any, calib_tokens: Any, *, method: str = "activation",
               seed: int = 0, batch_size: int = 16) -> Importance:
    """Importance scores of every prunable part of a GPT (see the module docstring).

    Args:
      model: the :class:`~jaxcomp.flax.Model` of ``get_model("gpt", ...)``, or an NNX
        :class:`~jaxcomp.models.gpt.GPT` module (then ``params`` may be None).
      params: its params (``nnx.State`` or pure dict).
      calib_tokens: ``(N, T)`` integer byte tokens, ``T <= context`` (only
        ``"activation"`` reads them; the others accept None).
      method: ``"activation"``, ``"magnitude"`` or ``"random"``.
      seed: the ``"random"`` control's seed.
      batch_size: rows per calibration batch (one jitted pass per batch shape).
    """
    check_choice("importance.method", method, METHODS)
    t = resolve(model, params, "importance.model")
    if method == "random":
        return _random(t.config, seed)
    if method == "magnitude":
        return _magnitude(t)
    tokens = check_tokens(calib_tokens, t.config, "importance.calib_tokens")
    return _activation(t, tokens, batch_size)


__all__ = ["METHODS", "Importance", "check_importance", "importance", "shapes"]
