"""Floating formats: scaled fp8, OCP Microscaling (MXFP8 / MXFP6 / MXFP4) and NVFP4.

Elements are rounded to the element grid with exact power-of-two arithmetic
(round to nearest, ties to even; saturating at the largest finite value), not by
an XLA dtype cast: XLA on CPU cannot compile fp6 casts and flushes subnormals,
and the grids are small enough to compute directly. The codes written by
:meth:`~jaxcomp.quant.formats.base.Format.encode` are the ``ml_dtypes`` bit
patterns of those values.

* ``fp8_e4m3`` / ``fp8_e5m2``: ``max|x|`` (per tensor, or per channel with
  ``axis``) maps to the format's largest value, as :mod:`jaxcomp.quant.fp8`
  does; the scale is float32.
* MX (OCP Microscaling v1.0): blocks of 32 along the input axis share an e8m0
  scale ``X = 2^(floor(log2(max|block|)) - emax_elem)`` (clamped to
  ``2^-127``, stored as the byte ``e + 127``); elements are ``x / X`` rounded
  with saturation. A block holding a NaN or an infinity gets the NaN scale
  (``0xFF``) and decodes to NaN (under ``jit``; concrete inputs are checked first).
* NVFP4: blocks of 16 with an e4m3 block scale ``round_e4m3(max|block| / 6 / s)``
  and one float32 tensor scale ``s = max|x| / (6 * 448)``; elements e2m1.

Example:
    >>> import jax.numpy as jnp
    >>> from jaxcomp.quant.formats import get_format
    >>> x = jnp.linspace(-1.0, 1.0, 64).reshape(32, 2)
    >>> p = get_format("mxfp4").encode(x)
    >>> p.arrays["scale"].tolist(), p.nbytes            # 2^(0 - 2): byte 125
    ([[125], [125]], 34)
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

from jaxcomp.core.errors import ConfigError, check_choice
from jaxcomp.quant.formats.base import (
    Format,
    check_block,
    from_blocks,
    input_axis,
    pack_bits,
    pow2,
    to_blocks,
    unpack_bits,
)
from jaxcomp.quant.fp8 import fp8_max
from jaxcomp.quant.uniform import normalize_axis


class Elem(NamedTuple):
    """A small float element format (sign, ``ebits`` exponent, ``mbits`` mantissa bits)."""

    name: str
    bits: int
    mbits: int
    emin: int      # exponent of the smallest normal (1 - bias)
    emax: int      # exponent of the largest normal
    max: float     # largest finite value
    dtype: type    # the ml_dtypes type with the same bit patterns


ELEMS = {
    "e2m1": Elem("e2m1", 4, 1, 0, 2, 6.0, ml_dtypes.float4_e2m1fn),
    "e2m3": Elem("e2m3", 6, 3, 0, 2, 7.5, ml_dtypes.float6_e2m3fn),
    "e3m2": Elem("e3m2", 6, 2, -2, 4, 28.0, ml_dtypes.float6_e3m2fn),
    "e4m3": Elem("e4m3", 8, 3, -6, 8, fp8_max("e4m3"), ml_dtypes.float8_e4m3fn),
    "e5m2": Elem("e5m2", 8, 2, -14, 15, fp8_max("e5m2"), ml_dtypes.float8_e5m2),
}


def round_to_elem(v: jax.Array, elem: Elem) -> jax.Array:
    """``v`` rounded to the nearest value of ``elem`` (ties to even), saturating.

    Example:
        >>> import jax.numpy as jnp
        >>> round_to_elem(jnp.array([0.25, 0.75, 2.5, 5.0, 7.0, -100.0]), ELEMS["e2m1"]).tolist()
        [0.0, 1.0, 2.0, 4.0, 6.0, -6.0]
    """
    a = jnp.abs(v)
    _, ex = jnp.frexp(a)                       # a = m * 2^ex, m in [0.5, 1)
    e = jnp.maximum(ex - 1, elem.emin)         # subnormals share the smallest exponent
    e = jnp.minimum(e, elem.emax)
    r = jnp.round(a * pow2(elem.mbits - e)) * pow2(e - elem.mbits)   # exact scalings
    return jnp.copysign(jnp.minimum(r, elem.max), v)


def elem_codes(values: np.ndarray, elem: Elem) -> np.ndarray:
    """The bit patterns (uint8) of exactly representable ``values``."""
    return np.asarray(values, np.float32).astype(elem.dtype).view(np.uint8)


def elem_values(codes: np.ndarray, elem: Elem) -> np.ndarray:
    """Float32 values of ``elem`` bit patterns."""
    return np.asarray(codes, np.uint8).view(elem.dtype).astype(np.float32)


# --------------------------------------------------------------------------- fp8 (scaled)
@dataclasses.dataclass(frozen=True)
class ScaledFloatFormat(Format):
    """fp8 elements with a float32 scale per tensor (``axis=None``) or per channel."""

    elem: str = "e4m3"
    axis: int | None = None
    FIXED = ("name", "elem")

    def validate(self) -> None:
        check_choice(f"{self.name} element", self.elem, ("e4m3", "e5m2"))
        if self.axis is not None and not isinstance(self.axis, int | np.integer):
            raise ConfigError(f"{self.name}: axis={self.axis!r}; allowed one int axis or None")

    def check_shape(self, shape: tuple[int, ...], what: str = "x") -> None:
        normalize_axis(self.axis, len(shape), f"{self.name} axis (for {what})")

    def quantize_parts(self, x: jax.Array) -> dict[str, jax.Array]:
        e = ELEMS[self.elem]
        keep = normalize_axis(self.axis, x.ndim)
        red = tuple(a for a in range(x.ndim) if a not in keep)
        amax = jnp.max(jnp.abs(x), axis=red, keepdims=True)
        scale = jnp.where(amax > 0, amax / e.max, 1.0).astype(jnp.float32)
        return {"q": round_to_elem(x / scale, e), "scale": scale}

    def dequantize_parts(self, parts, shape):
        return jnp.asarray(parts["q"], jnp.float32) * jnp.asarray(parts["scale"], jnp.float32)

    def mask(self, x, parts):
        return jnp.abs(x) <= ELEMS[self.elem].max * parts["scale"]

    def pack(self, parts):
        return {"codes": elem_codes(parts["q"], ELEMS[self.elem]).ravel(),
                "scale": np.asarray(parts["scale"], np.float32)}

    def unpack(self, arrays, shape):
        q = elem_values(arrays["codes"], ELEMS[self.elem]).reshape(shape)
        return {"q": jnp.asarray(q), "scale": jnp.asarray(arrays["scale"])}

    def bits_per_value(self, shape=None):
        if shape is None:
            return 8.0
        keep = normalize_axis(self.axis, len(shape))
        return 8.0 + 32.0 * math.prod(shape[a] for a in keep) / math.prod(shape)


# --------------------------------------------------------------------------- block formats
@dataclasses.dataclass(frozen=True)
class _BlockFormat(Format):
    block_size: int = 32
    axis: int | None = None          # None: the input features (ndim - 2; 0 for vectors)

    def validate(self) -> None:
        b = self.block_size
        if not isinstance(b, int | np.integer) or b < 1:
            raise ConfigError(f"{self.name}: block_size={b!r}; allowed a positive int")
        if self.axis is not None and not isinstance(self.axis, int | np.integer):
            raise ConfigError(f"{self.name}: axis={self.axis!r}; allowed one int axis or None "
                              f"(the input axis)")

    def check_shape(self, shape, what="x"):
        if not shape:
            raise ConfigError(f"{what}: format {self.name!r} needs at least one axis to "
                              f"block; got a scalar")
        check_block(shape, input_axis(self.axis, len(shape)), int(self.block_size), what,
                    f"{self.name} block_size")

    def _blocks(self, x):
        return to_blocks(x, input_axis(self.axis, x.ndim), int(self.block_size))

    def _unblock(self, yb, shape):
        return from_blocks(yb, shape, input_axis(self.axis, len(shape)))

    def _moved_shape(self, shape):
        ax = input_axis(self.axis, len(shape))
        n = shape[ax]
        return tuple(s for i, s in enumerate(shape) if i != ax) + (n // self.block_size,
                                                                     self.block_size)


@dataclasses.dataclass(frozen=True)
class MXFormat(_BlockFormat):
    """OCP MX: ``block_size`` (32) elements of ``elem`` share an e8m0 power-of-two scale."""

    elem: str = "e2m1"
    FIXED = ("name", "elem")

    def validate(self):
        super().validate()
        check_choice(f"{self.name} element", self.elem, tuple(ELEMS))

    def quantize_parts(self, x):
        e = ELEMS[self.elem]
        xb = self._blocks(x)
        amax = jnp.max(jnp.abs(xb), axis=-1, keepdims=True)
        _, ex = jnp.frexp(amax)
        shared = jnp.where(amax > 0, jnp.clip(ex - 1 - e.emax, -127, 127), -127)
        finite = jnp.isfinite(amax)
        shared = jnp.where(finite, shared, 0)
        q = round_to_elem(xb * pow2(-shared), e)           # x / X, exactly
        return {"q": q, "scale": jnp.where(finite, shared + 127, 255).astype(jnp.int32)}

    def _x(self, scale):
        s = jnp.asarray(scale, jnp.int32)
        return jnp.where(s == 255, jnp.float32(jnp.nan), pow2(s - 127))

    def dequantize_parts(self, parts, shape):
        yb = jnp.asarray(parts["q"], jnp.float32) * self._x(parts["scale"])
        return self._unblock(yb, shape)

    def mask(self, x, parts):
        lim = ELEMS[self.elem].max * self._x(parts["scale"])
        return self._unblock(jnp.abs(self._blocks(x)) <= lim, x.shape)

    def pack(self, parts):
        e = ELEMS[self.elem]
        return {"codes": pack_bits(elem_codes(parts["q"], e), e.bits),
                "scale": np.asarray(parts["scale"])[..., 0].astype(np.uint8)}

    def unpack(self, arrays, shape):
        e, moved = ELEMS[self.elem], self._moved_shape(shape)
        codes = unpack_bits(arrays["codes"], e.bits, math.prod(shape))
        return {"q": jnp.asarray(elem_values(codes, e).reshape(moved)),
                "scale": jnp.asarray(np.asarray(arrays["scale"], np.int32)[..., None])}

    def bits_per_value(self, shape=None):
        return ELEMS[self.elem].bits + 8 / self.block_size


@dataclasses.dataclass(frozen=True)
class NVFP4Format(_BlockFormat):
    """NVFP4: e2m1 elements, an e4m3 scale per ``block_size`` (16), a float32 tensor scale."""

    block_size: int = 16
    E4M3_MAX = 448.0
    E2M1_MAX = 6.0

    def quantize_parts(self, x):
        e2m1, e4m3 = ELEMS["e2m1"], ELEMS["e4m3"]
        amax = jnp.max(jnp.abs(x))
        ts = jnp.where(amax > 0, amax / (self.E2M1_MAX * self.E4M3_MAX), 1.0)
        xb = self._blocks(x)
        bmax = jnp.max(jnp.abs(xb), axis=-1, keepdims=True)
        sb = round_to_elem(bmax / self.E2M1_MAX / ts, e4m3)
        eff = sb * ts
        safe = jnp.where(eff > 0, eff, 1.0)
        q = jnp.where(eff > 0, round_to_elem(xb / safe, e2m1), 0.0)
        return {"q": q, "block_scale": sb, "tensor_scale": ts.astype(jnp.float32)}

    def dequantize_parts(self, parts, shape):
        eff = jnp.asarray(parts["block_scale"], jnp.float32) * \
            jnp.asarray(parts["tensor_scale"], jnp.float32)
        return self._unblock(jnp.asarray(parts["q"], jnp.float32) * eff, shape)

    def mask(self, x, parts):
        lim = self.E2M1_MAX * (parts["block_scale"] * parts["tensor_scale"])
        return self._unblock(jnp.abs(self._blocks(x)) <= lim, x.shape)

    def pack(self, parts):
        return {"codes": pack_bits(elem_codes(parts["q"], ELEMS["e2m1"]), 4),
                "block_scale": elem_codes(parts["block_scale"][..., 0], ELEMS["e4m3"]),
                "tensor_scale": np.asarray(parts["tensor_scale"], np.float32).reshape(1)}

    def unpack(self, arrays, shape):
        moved = self._moved_shape(shape)
        codes = unpack_bits(arrays["codes"], 4, math.prod(shape))
        return {"q": jnp.asarray(elem_values(codes, ELEMS["e2m1"]).reshape(moved)),
                "block_scale": jnp.asarray(
                    elem_values(arrays["block_scale"], ELEMS["e4m3"])[..., None]),
                "tensor_scale": jnp.asarray(arrays["tensor_scale"][0])}

    def bits_per_value(self, shape=None):
        nominal = 4 + 8 / self.block_size
        return nominal if shape is None else nominal + 32 / math.prod(shape)
