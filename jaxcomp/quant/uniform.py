"""Uniform affine quantization: ``quantize``, ``dequantize`` and ``fake_quant``.

``x ≈ (q - zero_point) * scale`` with integer ``q`` in ``[qmin, qmax]``.

* **bits** 2–8 or 16, a Python int *or a traced array*: ``qmin``/``qmax`` are
  computed from it with array arithmetic, so a bit sweep compiles once and
  ``jax.vmap`` runs over bit widths.
* **symmetric** (``zero_point = 0``; signed ``q`` in ``[-(2^(b-1)-1), 2^(b-1)-1]``,
  or unsigned ``[0, 2^b-1]`` for non-negative inputs) or **asymmetric**
  (the range is widened to include 0 and the zero point is an integer, so
  0.0 is represented exactly and pruned zeros stay zero).
* **granularity**: per-tensor (``axis=None``), per-channel (``axis`` = the
  kept axis or axes) and per-group (``group_size`` blocks along
  ``group_axis``). Scales keep the input's rank (size 1 on reduced axes,
  ``n_groups`` on the group axis), so they broadcast after :func:`expand`.
* **rounding**: ``"nearest"`` (half to even) or ``"stochastic"`` (needs ``key``).
* :func:`fake_quant` returns ``dequantize(quantize(x))`` with a straight-through
  gradient that is 1 inside the representable range and 0 outside it.

An all-zero tensor (or channel) gets scale 1 and ``q = 0`` (never a NaN scale).

Example:
    >>> import jax.numpy as jnp
    >>> from jaxcomp.quant.uniform import quantize, dequantize, fake_quant
    >>> x = jnp.array([[-1.0, 0.0], [0.5, 2.0]])
    >>> q, scale, zp = quantize(x, 8)
    >>> q.dtype, q.tolist()
    (dtype('int8'), [[-64, 0], [32, 127]])
    >>> bool(jnp.allclose(dequantize(q, scale, zp), x, atol=float(scale.max()) / 2))
    True
    >>> fake_quant(x, 4, axis=1).shape
    (2, 2)

References:
    Jacob et al. 2018, "Quantization and Training of Neural Networks for Efficient
    Integer-Arithmetic-Only Inference"; Krishnamoorthi 2018, "Quantizing deep
    convolutional networks for efficient inference: A whitepaper".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcomp.core.errors import ConfigError, _is_tracer

SUPPORTED_BITS = (2, 3, 4, 5, 6, 7, 8, 16)
ROUNDINGS = ("nearest", "stochastic")

Axis = None | int | Sequence[int]


# --------------------------------------------------------------------------- checks
def check_bits(bits: Any, what: str = "bits") -> Any:
    """Raise ConfigError unless every concrete value of ``bits`` is in
    :data:`SUPPORTED_BITS`; traced values are checked under :func:`jaxcomp.core.checked`."""
    if _is_tracer(bits):  # checked when the program runs, in checked mode only
        from jaxcomp.core.checked import check_traced_choice

        return check_traced_choice(what, bits, SUPPORTED_BITS)
    if isinstance(bits, str | bytes):
        raise ConfigError(f"{what}: got {bits!r}; expected a number in {SUPPORTED_BITS}, not "
                          f"text")
    try:
        arr = np.asarray(bits, dtype=np.float64)
    except Exception:
        raise ConfigError(f"{what}: got {bits!r}; allowed: {SUPPORTED_BITS}") from None
    if arr.size == 0 or not np.all(np.isin(arr, SUPPORTED_BITS)):
        raise ConfigError(f"{what}: got {bits!r}; allowed: {SUPPORTED_BITS}")
    return bits


def normalize_axis(axis: Axis, ndim: int, what: str = "axis") -> tuple[int, ...]:
    """Kept axes as a sorted tuple of non-negative ints; ConfigError if out of range."""
    if axis is None:
        return ()
    axes = (axis,) if isinstance(axis, int | np.integer) else tuple(axis)
    out = []
    for a in axes:
        if not isinstance(a, int | np.integer) or not -ndim <= a < ndim:
            raise ConfigError(f"{what}: got {axis!r} for a tensor of rank {ndim}; "
                              f"allowed range [{-ndim}, {ndim - 1}]")
        out.append(int(a) % ndim)
    if len(set(out)) != len(out):
        raise ConfigError(f"{what}: got {axis!r}; repeated axis")
    return tuple(sorted(out))


def _fits(ps: tuple[int, ...], qs: tuple[int, ...]) -> bool:
    if len(ps) == 0:
        return True
    if len(ps) != len(qs):
        return False
    return all(p == 1 or p == s or (p > 0 and s % p == 0) for p, s in zip(ps, qs, strict=True))


def _numeric_input(x: Any, what: str, floating: bool = False) -> Any:
    """``x`` as an array; ConfigError for text, objects or (``floating``) integer arrays."""
    if _is_tracer(x):
        dt = x.dtype
    else:
        if not hasattr(x, "dtype"):
            a = np.asarray(x)
            if a.dtype.kind not in "biuf":
                raise ConfigError(f"{what}: x got {type(x).__name__} {str(x)[:40]!r}; expected "
                                  "a float array")
            x = jnp.asarray(a)
        dt = x.dtype
    if floating and not jnp.issubdtype(dt, jnp.floating):
        raise ConfigError(f"{what}: x has dtype {dt}; only floating-point arrays can be "
                          "fake-quantized (quantize() gives integer codes)")
    return x


def check_finite(x: Any, what: str = "x") -> None:
    """ConfigError if a concrete ``x`` holds NaN or infinite values (tracers pass)."""
    if _is_tracer(x):
        return
    a = np.asarray(x)
    if a.size and np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
        bad = int(np.sum(~np.isfinite(a)))
        raise ConfigError(f"{what}: {bad} NaN or infinite value(s) of {a.size}; "
                          "quantization needs finite values")


# --------------------------------------------------------------------------- ranges
def qrange(bits: Any, *, signed: bool = True, symmetric: bool = True) -> tuple[Any, Any]:
    """``(qmin, qmax)`` as float arrays (``bits`` may be traced).

    Symmetric signed ranges are narrow (``-qmax .. qmax``) so that the scale
    maps ``±max|x|`` to ``±qmax`` exactly.

    Example:
        >>> [float(v) for v in qrange(4)]
        [-7.0, 7.0]
        >>> [float(v) for v in qrange(4, symmetric=False)]
        [-8.0, 7.0]
        >>> [float(v) for v in qrange(8, signed=False)]
        [0.0, 255.0]
    """
    check_bits(bits)
    b = jnp.asarray(bits, jnp.float32)
    # exp2 is approximate on some backends; integer powers of two must be exact
    if not signed:
        return jnp.zeros_like(b), jnp.round(jnp.exp2(b)) - 1.0
    half = jnp.round(jnp.exp2(b - 1.0))
    return (-(half - 1.0) if symmetric else -half), half - 1.0


def storage_dtype(bits: int, signed: bool = True) -> jnp.dtype:
    """The smallest integer dtype that holds ``bits``-bit codes (int4 is packed on export)."""
    if bits <= 8:
        return jnp.dtype(jnp.int8 if signed else jnp.uint8)
    return jnp.dtype(jnp.int16 if signed else jnp.uint16) if bits <= 16 else jnp.dtype(jnp.int32)


# --------------------------------------------------------------------------- granularity
def _group_view(x: jax.Array, group_size: int | None, group_axis: int) -> tuple[jax.Array, int]:
    """``x`` reshaped with ``group_axis`` split into ``(n_groups, group_size)``."""
    if group_size is None:
        return x, -1
    ga = normalize_axis(group_axis, x.ndim, "group_axis")[0]
    n = x.shape[ga]
    if not isinstance(group_size, int | np.integer) or group_size < 1 or n % group_size:
        raise ConfigError(f"group_size: got {group_size!r}; it must be a positive divisor of "
                          f"axis {ga}'s size {n}")
    shape = x.shape[:ga] + (n // group_size, group_size) + x.shape[ga + 1:]
    return x.reshape(shape), ga


def reduce_axes(ndim: int, axis: Axis = None, group_size: int | None = None,
                group_axis: int = 0) -> tuple[int, ...]:
    """The axes statistics are reduced over, in the (grouped) view of a rank-``ndim`` tensor."""
    keep = set(normalize_axis(axis, ndim))
    if group_size is None:
        return tuple(a for a in range(ndim) if a not in keep)
    ga = int(group_axis) % ndim
    if ga in keep:
        raise ConfigError(f"group_axis: {group_axis} is also a per-channel axis {axis!r}")
    # view has ndim+1 axes: original axis a > ga moves to a+1; ga -> (ga: groups, ga+1: block)
    out = [ga + 1]
    for a in range(ndim):
        if a == ga or a in keep:
            continue
        out.append(a + 1 if a > ga else a)
    return tuple(sorted(out))


def _min_max(x: jax.Array, axes: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    """``(min, max)`` over ``axes`` (kept, size 1).

    Over every axis (a per-tensor range) this is one variadic reduction: one pass over
    ``x``. Over some axes (per channel, per group) it is two plain reductions: XLA:CPU
    runs a variadic reduction over a non-minor axis up to 13x slower than the two
    (``benchmarks/quant.py --only minmax``)."""
    red = tuple(sorted({a % x.ndim for a in axes}))
    if not jnp.issubdtype(x.dtype, jnp.floating) or x.size == 0 or len(red) < x.ndim:
        return jnp.min(x, axis=red, keepdims=True), jnp.max(x, axis=red, keepdims=True)
    inf = jnp.array(jnp.inf, x.dtype)
    lo, hi = jax.lax.reduce((x, x), (inf, -inf),
                            lambda a, b: (jnp.minimum(a[0], b[0]), jnp.maximum(a[1], b[1])),
                            red)
    return lo.reshape((1,) * x.ndim), hi.reshape((1,) * x.ndim)


def minmax(x: jax.Array, axis: Axis = None, group_size: int | None = None,
           group_axis: int = 0) -> tuple[jax.Array, jax.Array]:
    """Per-tensor / per-channel / per-group ``(min, max)`` with the input's rank.

    Example:
        >>> import jax.numpy as jnp
        >>> lo, hi = minmax(jnp.arange(8.0).reshape(4, 2), group_size=2, group_axis=0)
        >>> lo.shape, hi[:, 0].tolist()
        ((2, 1), [3.0, 7.0])
    """
    normalize_axis(axis, x.ndim)
    xv, ga = _group_view(x, group_size, group_axis)
    red = reduce_axes(x.ndim, axis, group_size, group_axis)
    lo, hi = _min_max(xv, red)
    if group_size is not None:
        lo, hi = jnp.squeeze(lo, ga + 1), jnp.squeeze(hi, ga + 1)
    return lo, hi


def expand(p: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Repeat a per-group scale/zero point along its group axes to broadcast to ``shape``."""
    p = jnp.asarray(p)
    if p.ndim != len(shape):
        return p
    for a, (ps, s) in enumerate(zip(p.shape, shape, strict=True)):
        if ps not in (1, s):
            p = jnp.repeat(p, s // ps, axis=a)
    return p


# --------------------------------------------------------------------------- qparams
def qparams(lo: jax.Array, hi: jax.Array, bits: Any, *, symmetric: bool = True,
            signed: bool = True) -> tuple[jax.Array, jax.Array]:
    """``(scale, zero_point)`` for a range ``[lo, hi]`` (float32 arrays).

    The range is widened to include 0 so zero is exactly representable; a
    zero-width range gets scale 1 (no NaN, no inf).
    """
    check_bits(bits)
    lo = jnp.minimum(jnp.asarray(lo, jnp.float32), 0.0)
    hi = jnp.maximum(jnp.asarray(hi, jnp.float32), 0.0)
    qmin, qmax = qrange(bits, signed=signed, symmetric=symmetric)
    if symmetric:
        amax = hi if not signed else jnp.maximum(-lo, hi)
        scale = amax / qmax
        zp = jnp.zeros_like(scale)
    else:
        scale = (hi - lo) / (qmax - qmin)
        safe = jnp.where(scale > 0, scale, 1.0)
        zp = jnp.clip(jnp.round(qmin - lo / safe), qmin, qmax)
    ok = (scale > 0) & jnp.isfinite(scale)
    scale = jnp.where(ok, scale, 1.0)
    zp = jnp.where(ok, zp, 0.0) if not symmetric else zp
    return scale, zp


def _round(v: jax.Array, rounding: str, key: jax.Array | None) -> jax.Array:
    if rounding == "nearest":
        return jnp.round(v)
    if rounding == "stochastic":
        if key is None:
            raise ConfigError("rounding='stochastic' needs an explicit key=")
        return jnp.floor(v + jax.random.uniform(key, v.shape, v.dtype))
    raise ConfigError(f"rounding: got {rounding!r}; allowed: {ROUNDINGS}")


def quantize_with(x: jax.Array, scale: jax.Array, zero_point: jax.Array, bits: Any, *,
                  symmetric: bool = True, signed: bool = True, rounding: str = "nearest",
                  key: jax.Array | None = None) -> jax.Array:
    """Integer codes (as float32) of ``x`` for given scale and zero point, clipped to range."""
    check_bits(bits)
    qmin, qmax = qrange(bits, signed=signed, symmetric=symmetric)
    shape = x.shape
    v = x.astype(jnp.float32) / expand(scale, shape) + expand(zero_point, shape)
    return jnp.clip(_round(v, rounding, key), qmin, qmax)


def quantize(x: jax.Array, bits: Any = 8, *, axis: Axis = None, group_size: int | None = None,
             group_axis: int = 0, symmetric: bool = True, signed: bool = True,
             rounding: str = "nearest", key: jax.Array | None = None,
             dtype: Any = None) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Quantize ``x`` with min/max ranges; returns ``(q, scale, zero_point)``.

    Args:
      x: a float array (concrete inputs are checked for NaN/inf).
      bits: 2–8 or 16; may be a traced array.
      axis: per-channel axis or axes kept (``None``: per-tensor).
      group_size: per-group blocks of this many elements along ``group_axis``.
      symmetric, signed: see the module docstring.
      rounding: ``"nearest"`` or ``"stochastic"`` (with ``key``).
      dtype: the dtype of ``q``; default: the storage dtype for concrete ``bits``
        (int8 up to 8 bits, int16 for 16), float32 for traced ``bits``.

    Returns:
      ``q`` (integer codes), ``scale`` and ``zero_point`` (float32, the rank of ``x``).
    """
    check_bits(bits)
    x = _numeric_input(x, "quantize")
    check_finite(x)
    lo, hi = minmax(x, axis, group_size, group_axis)
    scale, zp = qparams(lo, hi, bits, symmetric=symmetric, signed=signed)
    q = quantize_with(x, scale, zp, bits, symmetric=symmetric, signed=signed,
                      rounding=rounding, key=key)
    if dtype is None and not _is_tracer(bits):
        dtype = storage_dtype(int(np.max(bits)), signed)
    return (q.astype(dtype) if dtype is not None else q), scale, zp


def dequantize(q: jax.Array, scale: jax.Array, zero_point: jax.Array | None = None,
               dtype: Any = jnp.float32) -> jax.Array:
    """``(q - zero_point) * scale`` (per-group scales are expanded)."""
    for name, p in (("scale", scale), ("zero_point", zero_point)):
        if p is not None and not _fits(jnp.shape(p), jnp.shape(q)):
            raise ConfigError(f"dequantize: {name} of shape {tuple(jnp.shape(p))} does not fit "
                              f"q of shape {tuple(jnp.shape(q))}; expected a scalar, the rank "
                              "of q with sizes 1, the size or a divisor (groups)")
    v = q.astype(jnp.float32)
    if zero_point is not None:
        v = v - expand(zero_point, q.shape)
    return (v * expand(scale, q.shape)).astype(dtype)


@jax.custom_vjp
def _ste_nearest(x: jax.Array, s: jax.Array, z: jax.Array, qmin: jax.Array,
                 qmax: jax.Array) -> jax.Array:
    """``(clip(round(x / s + z)) - z) * s`` with the clipped straight-through gradient.

    The same arithmetic as :func:`quantize_with` (so the same codes); the range mask
    is recomputed in the backward pass from ``x`` instead of being stored, which
    saves one pass over each quantized tensor per step.
    """
    q = jnp.clip(jnp.round(x.astype(jnp.float32) / s + z), qmin, qmax)
    return ((q - z) * s).astype(x.dtype) + 0.0  # + 0.0: a zero code gives +0.0, never -0.0


def _ste_nearest_fwd(x, s, z, qmin, qmax):
    return _ste_nearest(x, s, z, qmin, qmax), (x, s, z, qmin, qmax)


def _ste_nearest_bwd(res, g):
    x, s, z, qmin, qmax = res
    xf = x.astype(jnp.float32)
    inside = (xf >= (qmin - z) * s) & (xf <= (qmax - z) * s)
    gx = (g.astype(jnp.float32) * inside).astype(x.dtype)
    return gx, jnp.zeros_like(s), jnp.zeros_like(z), jnp.zeros_like(qmin), jnp.zeros_like(qmax)


_ste_nearest.defvjp(_ste_nearest_fwd, _ste_nearest_bwd)


@jax.custom_vjp
def _ste_absmax(x: jax.Array, s: jax.Array, qmax: jax.Array) -> jax.Array:
    """``clip(round(x / s), -qmax, qmax) * s`` for a symmetric scale ``s = max|x| / qmax``
    taken from ``x`` itself, with the plain straight-through gradient.

    Nothing can be clipped (``|x / s| <= qmax`` up to rounding, which ``round`` absorbs),
    so the clipped STE's range mask is all ones: this skips computing it, and so the
    element that sets the range keeps its gradient even when ``qmax * s`` rounds a hair
    below ``max|x|`` in float32. Same codes as :func:`_ste_nearest`.
    """
    q = jnp.clip(jnp.round(x.astype(jnp.float32) / s), -qmax, qmax)
    return (q * s).astype(x.dtype) + 0.0  # + 0.0: a zero code gives +0.0, never -0.0


def _ste_absmax_fwd(x, s, qmax):
    return _ste_absmax(x, s, qmax), (s, qmax)


def _ste_absmax_bwd(res, g):
    s, qmax = res
    return g, jnp.zeros_like(s), jnp.zeros_like(qmax)


_ste_absmax.defvjp(_ste_absmax_fwd, _ste_absmax_bwd)


def ste_fake_quant(x: jax.Array, scale: jax.Array, zero_point: jax.Array, bits: Any, *,
                   symmetric: bool = True, signed: bool = True, rounding: str = "nearest",
                   key: jax.Array | None = None) -> jax.Array:
    """Fake-quantize with given (non-differentiated) qparams and a clipped STE."""
    scale = jax.lax.stop_gradient(scale)
    zero_point = jax.lax.stop_gradient(zero_point)
    qmin, qmax = qrange(bits, signed=signed, symmetric=symmetric)
    s, z = expand(scale, x.shape), expand(zero_point, x.shape)
    if rounding == "nearest":
        z = jnp.asarray(z, jnp.float32)
        return _ste_nearest(x, jnp.asarray(s, jnp.float32), z, jax.lax.stop_gradient(qmin),
                            jax.lax.stop_gradient(qmax))
    lo, hi = (qmin - z) * s, (qmax - z) * s
    xf = x.astype(jnp.float32)
    inside = (xf >= lo) & (xf <= hi)
    q = quantize_with(jax.lax.stop_gradient(xf), scale, zero_point, bits, symmetric=symmetric,
                      signed=signed, rounding=rounding, key=key)
    fq = (q - z) * s
    # forward: fq exactly; backward: 1 inside the representable range, 0 outside
    return (fq + (xf - jax.lax.stop_gradient(xf)) * inside).astype(x.dtype)


def fake_quant(x: jax.Array, bits: Any = 8, *, axis: Axis = None, group_size: int | None = None,
               group_axis: int = 0, symmetric: bool = True, signed: bool = True,
               rounding: str = "nearest", key: jax.Array | None = None) -> jax.Array:
    """``dequantize(quantize(x))`` with a straight-through gradient clipped to the range.

    The min/max range is computed from ``x`` (no gradient flows into it).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> g = jax.grad(lambda x: fake_quant(x, 8).sum())(jnp.array([0.3, -1.0]))
        >>> g.tolist()
        [1.0, 1.0]
    """
    check_bits(bits)
    x = _numeric_input(x, "fake_quant", floating=True)
    check_finite(x)
    xs = jax.lax.stop_gradient(x)
    lo, hi = minmax(xs, axis, group_size, group_axis)  # symmetric: qparams takes max(-lo, hi)
    scale, zp = qparams(lo, hi, bits, symmetric=symmetric, signed=signed)
    if symmetric and signed and rounding == "nearest":  # absmax range: nothing is clipped
        _, qmax = qrange(bits, signed=True, symmetric=True)
        return _ste_absmax(x, jnp.asarray(expand(scale, x.shape), jnp.float32),
                           jax.lax.stop_gradient(qmax))
    return ste_fake_quant(x, scale, zp, bits, symmetric=symmetric, signed=signed,
                          rounding=rounding, key=key)
