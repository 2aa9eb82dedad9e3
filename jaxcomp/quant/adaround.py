"""AdaRound (Nagel et al. 2020): learn, per weight, whether to round up or down.

For each Dense/Conv layer, on a small calibration set, the quantized kernel is
``W̃ = s · clip(⌊W/s⌋ + h(V), qmin, qmax)`` with the rectified sigmoid
``h(V) = clip(σ(V)(ζ-γ) + γ, 0, 1)`` (ζ = 1.1, γ = -0.1). ``V`` minimizes the
layer-wise reconstruction loss ``‖f(X; W) - f(X; W̃)‖²`` plus the rounding
regularizer ``λ Σ 1 - |2h(V) - 1|^β``, with β annealed from 20 to 2 after a
warm-up (no regularization for the first 20% of the iterations). At the end
``h`` is hardened to 0/1. ``X`` are the layer's inputs in the float model,
captured through the interception adapter; layers are done in order.

Scales are symmetric min/max, per channel or per tensor (as in round-to-nearest), so the
result only differs from RTN in the rounding direction — and exports to the
same integer format.

Example:
    >>> import jax
    >>> from jaxcomp.models import get_model
    >>> from jaxcomp.quant.adaround import adaround
    >>> m = get_model("mlp", input_shape=(6,), num_classes=3, features=(8,))
    >>> x = jax.random.normal(jax.random.key(1), (64, 6))
    >>> params, ms = m.init(jax.random.key(0), x)
    >>> q = adaround(m, params, ms, x, bits=4, iters=50)
    >>> sorted(q)
    ['Dense_0', 'Dense_1']

References:
    Nagel et al. 2020, "Up or Down? Adaptive Rounding for Post-Training Quantization".
"""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcomp.core.errors import ConfigError, check_range
from jaxcomp.flax.intercept import intercept
from jaxcomp.flax.model import Model
from jaxcomp.flax.modules import conv_config, layer_kind, pure_params
from jaxcomp.quant.intinfer import _pads
from jaxcomp.quant.ptq import layer_paths
from jaxcomp.quant.uniform import check_bits, minmax, qparams, qrange

ZETA, GAMMA = 1.1, -0.1


def rectified_sigmoid(v: jax.Array) -> jax.Array:
    """``clip(σ(v)(ζ-γ) + γ, 0, 1)``."""
    return jnp.clip(jax.nn.sigmoid(v) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


def init_v(w: jax.Array, scale: jax.Array) -> jax.Array:
    """``V`` such that ``h(V)`` equals the fractional part of ``W/s`` (start at the float)."""
    frac = w / scale - jnp.floor(w / scale)
    p = jnp.clip((frac - GAMMA) / (ZETA - GAMMA), 1e-4, 1 - 1e-4)
    return jnp.log(p / (1 - p))


def _layer_fn(module: Any, x_shape: tuple[int, ...]):
    """A pure ``f(x, kernel)`` for a captured Dense/Conv (bias excluded: it cancels);
    ``module`` is the layer itself or its ``(kind, conv_config)`` as captured."""
    kind, cfg = module if isinstance(module, tuple) else _layer_info(module)
    if kind == "dense":
        return lambda x, k: x @ k
    if kind == "conv":
        def conv(x, k):
            return jax.lax.conv_general_dilated(
                x, k, cfg["strides"],
                _pads(cfg["padding"], x_shape, k.shape, cfg["strides"], cfg["dilation"]),
                rhs_dilation=cfg["dilation"], dimension_numbers=("NHWC", "HWIO", "NHWC"),
                feature_group_count=cfg["groups"])
        return conv
    raise ConfigError(f"adaround: {type(module).__name__} layers are not supported")


def _layer_info(module: Any) -> tuple[str | None, dict[str, Any] | None]:
    kind = layer_kind(module)
    return kind, conv_config(module) if kind == "conv" else None


def _capture_inputs(model: Model, params: Any, model_state: Any, x: Any,
                    paths: list[str]) -> dict[str, tuple[Any, Any]]:
    seen: dict[str, tuple[Any, Any]] = {}

    def hook(path, module, args, kwargs, call_next):
        seen[path] = (_layer_info(module), args[0])
        return call_next(*args, **kwargs)

    with intercept([re.escape(p) for p in paths], hook):
        model.apply(params, model_state, x, train=False)
    return seen


def adaround_layer(fn, x: jax.Array, w: jax.Array, bits: Any, *, iters: int = 1000,
                   lr: float = 1e-2, reg: float = 0.01, beta: tuple[float, float] = (20.0, 2.0),
                   warmup: float = 0.2, batch: int = 256, per_channel: bool = True,
                   key: jax.Array) -> jax.Array:
    """AdaRound one kernel (symmetric scales, per output channel or per tensor)."""
    lo, hi = minmax(w, axis=w.ndim - 1 if per_channel else None)
    s, _ = qparams(lo, hi, bits, symmetric=True)
    qmin, qmax = qrange(bits, symmetric=True)
    base = jnp.floor(w / s)
    target_all = fn(x, w)
    n = x.shape[0]
    bs = min(batch, n)

    def soft_w(v):
        return s * jnp.clip(base + rectified_sigmoid(v), qmin, qmax)

    def loss(v, xb, tb, b, use_reg):
        rec = jnp.mean(jnp.sum(jnp.square(fn(xb, soft_w(v)) - tb).reshape(bs, -1), axis=-1))
        h = rectified_sigmoid(v)
        r = jnp.sum(1.0 - jnp.abs(2.0 * h - 1.0) ** b)
        return rec + use_reg * reg * r

    tx = optax.adam(lr)

    def step(carry, i):
        v, opt = carry
        k = jax.random.fold_in(key, i)
        idx = jax.random.choice(k, n, (bs,), replace=n < bs)
        t = i / iters
        ramp = jnp.clip((t - warmup) / (1 - warmup), 0.0, 1.0)
        b = beta[1] + (beta[0] - beta[1]) * (1 - ramp)
        g = jax.grad(loss)(v, x[idx], target_all[idx], b, (t >= warmup).astype(jnp.float32))
        upd, opt = tx.update(g, opt, v)
        return (optax.apply_updates(v, upd), opt), None

    v0 = init_v(w, s)
    (v, _), _ = jax.lax.scan(step, (v0, tx.init(v0)), jnp.arange(iters))
    hard = (rectified_sigmoid(v) >= 0.5).astype(w.dtype)
    return s * jnp.clip(base + hard, qmin, qmax)


def adaround(model: Model, params: Any, model_state: Any, x: Any, *, bits: Any = 4,
             iters: int = 1000, lr: float = 1e-2, reg: float = 0.01,
             key: jax.Array | None = None, layers: list[str] | None = None,
             per_channel: bool = True) -> Any:
    """AdaRound every Dense/Conv kernel; returns params with the quantized kernels.

    Args:
      model, params, model_state: a trained linen or NNX model (fold BatchNorm first).
      x: calibration inputs (one array, e.g. 1024 training images).
      bits: weight bits (2–8); iters, lr, reg: the optimization (per layer).
      key: PRNG key for mini-batch sampling (default ``jax.random.key(0)``).
      layers: module paths to round (default: all layers with a kernel).
      per_channel: per-output-channel scales (else one scale per tensor), the
        same min/max scales as round-to-nearest.
    """
    check_bits(bits, "adaround bits")
    check_range("adaround iters", iters, 1, None)
    if x is None or len(x) == 0:
        raise ConfigError("adaround: got no calibration inputs; need at least 1")
    key = jax.random.key(0) if key is None else key
    paths = layers or layer_paths(params)
    captured = _capture_inputs(model, params, model_state, x, paths)
    out = _copy(pure_params(params))
    for i, path in enumerate(paths):
        module, xin = captured[path]
        node = out
        for part in path.split("/"):
            node = node[part]
        w = node["kernel"]
        fn = _layer_fn(module, xin.shape)
        run = jax.jit(lambda xx, ww, k, fn=fn: adaround_layer(fn, xx, ww, bits, iters=iters,
                                                              lr=lr, reg=reg, key=k,
                                                              per_channel=per_channel))
        node["kernel"] = run(xin, w, jax.random.fold_in(key, i))
    return out


def _copy(tree: Any) -> Any:
    if hasattr(tree, "items"):
        return {k: _copy(v) for k, v in tree.items()}
    return tree


def rounding_flips(q: Any, ref: Any) -> float:
    """Fraction of kernel entries whose rounding differs between two quantized trees."""
    a = np.concatenate([np.ravel(x) for x in jax.tree.leaves(q)])
    b = np.concatenate([np.ravel(x) for x in jax.tree.leaves(ref)])
    return float(np.mean(a != b))
