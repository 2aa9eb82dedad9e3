"""Range observers for post-training quantization: min/max, moving-average
min/max (Jacob et al. 2018), percentile and MSE-optimal clipping.

Each observer maps a tensor to a ``(lo, hi)`` range of the same rank as the
tensor (size 1 on reduced axes; per-channel axes kept). :func:`observe`
dispatches by name; :func:`ema` folds one batch's range into running ranges.

Example:
    >>> import jax
    >>> from jaxcomp.quant.observers import observe
    >>> x = jax.random.normal(jax.random.key(0), (10000,))
    >>> _, hi_max = observe(x, "minmax")
    >>> _, hi_mse = observe(x, "mse", bits=4)   # clips the Gaussian's tails
    >>> hi_mse.item() < 0.9 * hi_max.item()
    True
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxcomp.core.errors import ConfigError, check_choice, check_number, check_range
from jaxcomp.quant.uniform import Axis, check_bits, minmax, normalize_axis, qparams, quantize_with

OBSERVERS = ("minmax", "ema", "percentile", "mse")


def percentile_range(x: jax.Array, percentile: float = 99.99,
                     axis: Axis = None) -> tuple[jax.Array, jax.Array]:
    """``(lo, hi)`` at the ``100 - p`` and ``p`` percentiles (per tensor or channel)."""
    check_range("percentile", percentile, 50.0, 100.0)
    keep = normalize_axis(axis, x.ndim)
    red = tuple(a for a in range(x.ndim) if a not in keep)
    lo = jnp.percentile(x, 100.0 - percentile, axis=red, keepdims=True)
    hi = jnp.percentile(x, percentile, axis=red, keepdims=True)
    return lo, hi


def mse_range(x: jax.Array, bits: Any = 8, *, axis: Axis = None, symmetric: bool = True,
              signed: bool = True, grid: int = 64,
              min_ratio: float = 0.05) -> tuple[jax.Array, jax.Array]:
    """The min/max range shrunk by the factor (from ``grid`` candidates in
    ``[min_ratio, 1]``) that minimizes the quantization MSE, per tensor or channel.

    The search is one vectorized pass (``lax.map`` over candidates), jit-safe,
    with ``bits`` possibly traced.
    """
    check_bits(bits)
    check_number("grid", grid, 1, None, integer=True)
    check_number("min_ratio", min_ratio, 0.0, 1.0, lo_open=True)
    keep = normalize_axis(axis, x.ndim)
    red = tuple(a for a in range(x.ndim) if a not in keep)
    lo0, hi0 = minmax(x, axis)
    x = x.astype(jnp.float32)

    def err(r):
        s, z = qparams(lo0 * r, hi0 * r, bits, symmetric=symmetric, signed=signed)
        q = quantize_with(x, s, z, bits, symmetric=symmetric, signed=signed)
        return jnp.mean(jnp.square((q - z) * s - x), axis=red, keepdims=True)

    ratios = jnp.linspace(min_ratio, 1.0, grid)
    errs = jax.lax.map(err, ratios)  # (grid, *stat_shape)
    best = ratios[jnp.argmin(errs, axis=0)]
    return lo0 * best, hi0 * best


def observe(x: jax.Array, observer: str = "minmax", *, bits: Any = 8, axis: Axis = None,
            symmetric: bool = True, signed: bool = True,
            percentile: float = 99.99) -> tuple[jax.Array, jax.Array]:
    """One tensor's range by the named observer (``"ema"`` behaves as min/max here)."""
    check_choice("observer", observer, OBSERVERS)
    if observer in ("minmax", "ema"):
        return minmax(x, axis)
    if observer == "percentile":
        return percentile_range(x, percentile, axis)
    return mse_range(x, bits, axis=axis, symmetric=symmetric, signed=signed)


def ema(old: tuple[jax.Array, jax.Array], new: tuple[jax.Array, jax.Array], count: jax.Array,
        momentum: float = 0.9) -> tuple[jax.Array, jax.Array]:
    """Moving-average ranges: the first observation (``count == 0``) is taken as is."""
    check_number("momentum", momentum, 0.0, 1.0)
    first = count == 0
    return tuple(jnp.where(first, n, momentum * o + (1.0 - momentum) * n)
                 for o, n in zip(old, new, strict=True))


def combine(old: tuple[jax.Array, jax.Array], new: tuple[jax.Array, jax.Array], count: Any,
            observer: str, momentum: float = 0.9) -> tuple[jax.Array, jax.Array]:
    """Fold one calibration batch's range into the running range.

    ``minmax``: running min and max; ``ema``: moving average; ``percentile``
    and ``mse``: the running mean of the per-batch ranges.
    """
    check_choice("observer", observer, OBSERVERS)
    check_number("momentum", momentum, 0.0, 1.0)
    count = jnp.asarray(count)
    if observer == "minmax":
        first = count == 0
        return (jnp.where(first, new[0], jnp.minimum(old[0], new[0])),
                jnp.where(first, new[1], jnp.maximum(old[1], new[1])))
    if observer == "ema":
        return ema(old, new, count, momentum)
    c = count.astype(jnp.float32)
    return tuple((o * c + n) / (c + 1.0) for o, n in zip(old, new, strict=True))


def require_batches(n: int, what: str = "calib_batches") -> int:
    """ConfigError unless at least one calibration batch is given."""
    check_number(what, n, integer=True)
    if n < 1:
        raise ConfigError(f"{what}: got {n} calibration batches; need at least 1")
    return n
