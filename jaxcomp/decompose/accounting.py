"""Accounting: parameters and FLOPs per layer before/after factorization,
measured forward time, and a per-layer choice between the factorized and the
reconstructed (dense) form by measured speed on the current device.

Shapes come from one abstract forward pass of the *base* (dense) linen or NNX
model at batch 1 (``jax.eval_shape`` under :func:`jaxcomp.flax.intercept`, which
records every ``nn.Dense`` / ``nn.Conv`` / ``nnx.Linear`` / ``nnx.Conv`` call).
FLOPs are ``2 ×`` multiply-adds, biases ignored.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp.models import get_model
    >>> from jaxcomp.decompose.accounting import layer_shapes, ledger
    >>> m = get_model("lenet300", input_shape=(28, 28, 1))
    >>> p, s = m.init(jax.random.key(0), jnp.ones((1, 28, 28, 1)))
    >>> rows = ledger(layer_shapes(m, p, s, (28, 28, 1)),
    ...               {"Dense_0": {"method": "svd", "rank": 32}})
    >>> rows[0]["params_before"], rows[0]["params_after"]
    (235200, 34688)
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcomp.decompose import layers as L
from jaxcomp.decompose.convert import FACTOR_NAMES, normalize_spec
from jaxcomp.flax.intercept import intercept
from jaxcomp.flax.model import Model
from jaxcomp.flax.modules import conv_config, layer_kind, out_features


def layer_shapes(model: Model, params: Any, model_state: Any,
                 input_shape: tuple[int, ...]) -> dict[str, dict[str, Any]]:
    """``{module_path: info}`` for every Dense/Conv call of a linen or NNX model at batch 1.

    ``info``: ``type`` (``"dense"``/``"conv"``), ``in``/``out`` shapes, ``kernel`` shape,
    ``strides``, ``padding``. NNX layers (``nnx.Linear`` / ``nnx.Conv`` of a
    :func:`~jaxcomp.flax.from_nnx` model) are found by their state paths.
    """
    found: dict[str, dict[str, Any]] = {}

    def rec(path, mod, args, kwargs, call_next):
        y = call_next(*args, **kwargs)
        kind = layer_kind(mod)
        if kind in ("dense", "conv"):
            x = args[0] if args else kwargs["inputs"]
            info = {"type": kind, "in": tuple(x.shape), "out": tuple(y.shape)}
            if kind == "conv":
                cfg = conv_config(mod)
                info.update(kernel=(*cfg["kernel_size"], x.shape[-1], cfg["features"]),
                            strides=L._strides(cfg["strides"]), padding=cfg["padding"])
            else:
                info["kernel"] = (x.shape[-1], out_features(mod))
            found[path] = info
        return y

    x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    with intercept([".*"], rec, check=False):
        jax.eval_shape(lambda p, s, x: model.apply(p, s, x, train=False)[0], params,
                       model_state, x)
    return found


def layer_cost(info: Mapping[str, Any], method: str | None = None,
               rank: Any = None) -> dict[str, int]:
    """``{"params", "flops"}`` of one layer, dense (``method=None``) or factorized."""
    k = info["kernel"]
    if info["type"] == "dense":
        pos = math.prod(info["in"][1:-1]) if len(info["in"]) > 2 else 1
        w = k[0] * k[1] if method is None else rank * (k[0] + k[1])
        return {"params": int(w), "flops": int(2 * w * pos)}
    kh, kw, cin, cout = k
    hin, win = info["in"][1:3]
    hout, wout = info["out"][1:3]
    if method is None:
        w = kh * kw * cin * cout
        return {"params": int(w), "flops": int(2 * w * hout * wout)}
    if method == "tucker2":
        ri, ro = rank
        w = cin * ri + kh * kw * ri * ro + ro * cout
        fl = cin * ri * hin * win + kh * kw * ri * ro * hout * wout + ro * cout * hout * wout
        return {"params": int(w), "flops": int(2 * fl)}
    r = rank
    w = r * (cin + kh + kw + cout)
    fl = cin * r * hin * win + kh * r * hout * win + kw * r * hout * wout \
        + r * cout * hout * wout
    return {"params": int(w), "flops": int(2 * fl)}


def ledger(shapes: Mapping[str, Mapping[str, Any]],
           spec: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per Dense/Conv layer: params and FLOPs before and after (batch 1)."""
    spec = normalize_spec(spec)
    rows = []
    for path, info in shapes.items():
        before = layer_cost(info)
        e = spec.get(path)
        after = layer_cost(info, e["method"], e["rank"]) if e else before
        rows.append({"path": path, "method": e["method"] if e else "dense",
                     "rank": e["rank"] if e else None,
                     "params_before": before["params"], "params_after": after["params"],
                     "flops_before": before["flops"], "flops_after": after["flops"]})
    return rows


def time_fn(fn: Callable[..., Any], *args: Any, repeats: int = 20, warmup: int = 2) -> float:
    """Median wall seconds of ``fn(*args)`` (blocked until ready) after warm-up."""
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def time_interleaved(fns: Mapping[str, Callable[[], Any]], repeats: int = 7,
                     inner: int = 1) -> dict[str, float]:
    """Median seconds per call of each zero-argument function, runs interleaved."""
    for f in fns.values():
        jax.block_until_ready(f())
    ts: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(inner):
                out = f()
            jax.block_until_ready(out)
            ts[k].append((time.perf_counter() - t0) / inner)
    return {k: statistics.median(v) for k, v in ts.items()}


def _layer_fns(info, method, factors, padding):
    strides = info.get("strides", (1, 1))
    if info["type"] == "dense":
        return (jax.jit(lambda x, k: x @ k),
                jax.jit(lambda x, u, v: L.lowrank_dense(x, u, v)))
    dense = jax.jit(lambda x, k: jax.lax.conv_general_dilated(
        x, k, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC")))
    if method == "tucker2":
        return dense, jax.jit(lambda x, a, b, c: L.tucker_conv(x, a, b, c, strides=strides,
                                                               padding=padding))
    return dense, jax.jit(lambda x, a, b, c, d: L.cp_conv(x, a, b, c, d, strides=strides,
                                                          padding=padding))


def layer_timings(shapes: Mapping[str, Mapping[str, Any]], fparams: Any,
                  spec: Mapping[str, Mapping[str, Any]], *, batch: int = 64,
                  repeats: int = 7, key: jax.Array | None = None) -> dict[str, dict[str, float]]:
    """Measured forward seconds of each factorized layer and of its dense reconstruction,
    on random inputs of the layer's recorded shape at ``batch``."""
    from jaxcomp.decompose.convert import reconstruct_kernel
    from jaxcomp.decompose.factorize import _module_params_any

    spec = normalize_spec(spec)
    key = jax.random.key(0) if key is None else key
    out = {}
    for path, e in spec.items():
        info = shapes[path]
        node = _module_params_any(fparams, path)
        factors = [node[n] for n in FACTOR_NAMES[e["method"]]]
        kernel = reconstruct_kernel(dict(zip(FACTOR_NAMES[e["method"]], factors,
                                              strict=True)), e["method"])
        pad = info.get("padding", "SAME")
        pad = pad if isinstance(pad, str) else [tuple(p) for p in pad]
        dense, fact = _layer_fns(info, e["method"], factors, pad)
        x = jax.random.normal(key, (batch, *info["in"][1:]), jnp.float32)
        t = time_interleaved({"dense": lambda d=dense, x=x, k=kernel: d(x, k),
                              "factorized": lambda f=fact, x=x, fs=factors: f(x, *fs)},
                             repeats=repeats)
        out[path] = {"dense_s": t["dense"], "factorized_s": t["factorized"]}
    return out


def choose_forms(timings: Mapping[str, Mapping[str, float]]) -> dict[str, str]:
    """``{path: "factorized" | "dense"}`` — whichever measured faster."""
    return {p: "factorized" if t["factorized_s"] < t["dense_s"] else "dense"
            for p, t in timings.items()}


def apply_choice(fparams: Any, spec: Mapping[str, Mapping[str, Any]],
                 choice: Mapping[str, str]) -> tuple[Any, dict[str, dict[str, Any]]]:
    """Reconstruct the layers chosen ``"dense"``; returns ``(params, spec)`` of the rest."""
    from jaxcomp.decompose.factorize import reconstruct_params

    spec = normalize_spec(spec)
    dense = {p: e for p, e in spec.items() if choice.get(p) == "dense"}
    keep = {p: e for p, e in spec.items() if choice.get(p) != "dense"}
    return (reconstruct_params(fparams, dense) if dense else fparams), keep


def totals(rows: list[Mapping[str, Any]]) -> dict[str, int]:
    """Sums of the ledger's numeric columns."""
    keys = ("params_before", "params_after", "flops_before", "flops_after")
    return {k: int(np.sum([r[k] for r in rows])) for k in keys}
