"""Integer formats ``int2`` … ``int8``: uniform affine codes with float32 scales.

Options: ``symmetric`` (zero point 0, narrow signed range ``±(2^(b-1)-1)``; else
an integer zero point stored as int8 and the range ``[-2^(b-1), 2^(b-1)-1]``),
``axis`` (per-channel kept axis, ``-1`` = a kernel's output features; ``None`` =
per tensor) and ``group_size`` (blocks of that many elements along ``group_axis``,
``None`` = the input features, each with its own scale; 32 / 64 / 128 are usual).
The arithmetic is :mod:`jaxcomp.quant.uniform`'s, so the values equal
``jaxcomp.quant.fake_quant``'s. Codes are stored offset to unsigned
(``q + 2^(b-1)``) and bit-packed densely; scales are float32.

Example:
    >>> import jax.numpy as jnp
    >>> from jaxcomp.quant.formats import get_format
    >>> f = get_format("int4", axis=None)
    >>> f.fake_quant(jnp.array([-1.0, 0.3, 0.7])).tolist()
    [-1.0, 0.2857142984867096, 0.7142857313156128]
    >>> f.encode(jnp.zeros((128, 64))).nbytes                   # 4 bits + one f32 scale
    4100
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxcomp.core.errors import ConfigError
from jaxcomp.quant.formats.base import Format, check_block, input_axis, pack_bits, unpack_bits
from jaxcomp.quant.uniform import expand, minmax, normalize_axis, qparams, qrange, quantize_with


@dataclasses.dataclass(frozen=True)
class IntFormat(Format):
    """``bits``-bit integer codes; see the module docstring for the options."""

    bits: int = 8
    symmetric: bool = True
    axis: int | None = -1
    group_size: int | None = None
    group_axis: int | None = None
    FIXED = ("name", "bits")

    def validate(self) -> None:
        if self.bits not in range(2, 9):
            raise ConfigError(f"{self.name}: bits={self.bits!r}; allowed 2..8")
        for opt in ("axis", "group_axis"):
            v = getattr(self, opt)
            if v is not None and not isinstance(v, int | np.integer):
                raise ConfigError(f"{self.name}: {opt}={v!r}; allowed one int axis or None")
        gs = self.group_size
        if gs is not None and (not isinstance(gs, int | np.integer) or gs < 1):
            raise ConfigError(f"{self.name}: group_size={gs!r}; allowed a positive int "
                              f"(32, 64, 128 are usual) or None")

    def _axes(self, ndim: int, what: str = "x") -> tuple[int | None, int | None]:
        keep = normalize_axis(self.axis, ndim, f"{self.name} axis (for {what})")
        keep = keep[0] if keep else None
        if self.group_size is None:
            return keep, None
        ga = input_axis(self.group_axis, ndim)
        if ga == keep:
            raise ConfigError(f"{self.name} for {what}: group_axis {ga} is also the "
                              f"per-channel axis; use axis=None or another group_axis")
        return keep, ga

    def check_shape(self, shape: tuple[int, ...], what: str = "x") -> None:
        _, ga = self._axes(len(shape), what)
        if ga is not None:
            check_block(shape, ga, int(self.group_size), what, "group_size")

    def _scales(self, x: jax.Array):
        keep, ga = self._axes(x.ndim)
        lo, hi = minmax(x, keep, self.group_size, ga if ga is not None else 0)
        return qparams(lo, hi, self.bits, symmetric=self.symmetric)

    def quantize_parts(self, x: jax.Array) -> dict[str, jax.Array]:
        scale, zp = self._scales(x)
        q = quantize_with(x, scale, zp, self.bits, symmetric=self.symmetric)
        q = jnp.where(q == 0, 0.0, q)          # integer codes have no -0 (decode gives +0)
        return {"q": q, "scale": scale, "zero_point": zp}

    def dequantize_parts(self, parts: Mapping[str, jax.Array],
                         shape: tuple[int, ...]) -> jax.Array:
        q = jnp.asarray(parts["q"], jnp.float32)
        s = expand(jnp.asarray(parts["scale"], jnp.float32), shape)
        z = expand(jnp.asarray(parts["zero_point"], jnp.float32), shape)
        return (q - z) * s

    def mask(self, x: jax.Array, parts: Mapping[str, jax.Array]) -> jax.Array:
        qmin, qmax = qrange(self.bits, symmetric=self.symmetric)
        s, z = expand(parts["scale"], x.shape), expand(parts["zero_point"], x.shape)
        return (x >= (qmin - z) * s) & (x <= (qmax - z) * s)

    def pack(self, parts: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        codes = (parts["q"].astype(np.int32) + 2 ** (self.bits - 1)).astype(np.uint8)
        out = {"codes": pack_bits(codes, self.bits),
               "scale": np.asarray(parts["scale"], np.float32)}
        if not self.symmetric:
            out["zero_point"] = np.asarray(parts["zero_point"]).astype(np.int8)
        return out

    def unpack(self, arrays: Mapping[str, np.ndarray],
               shape: tuple[int, ...]) -> dict[str, jax.Array]:
        n = math.prod(shape)
        codes = unpack_bits(arrays["codes"], self.bits, n).astype(np.int32)
        q = (codes - 2 ** (self.bits - 1)).astype(np.float32).reshape(shape)
        scale = np.asarray(arrays["scale"], np.float32)
        zp = np.asarray(arrays.get("zero_point", np.zeros_like(scale)), np.float32)
        return {"q": jnp.asarray(q), "scale": jnp.asarray(scale), "zero_point": jnp.asarray(zp)}

    def bits_per_value(self, shape: tuple[int, ...] | None = None) -> float:
        per_scale = 32 + (0 if self.symmetric else 8)
        if shape is None:
            return self.bits + (per_scale / self.group_size if self.group_size else 0.0)
        n = math.prod(shape)
        keep, ga = self._axes(len(shape))
        n_scales = 1
        if keep is not None:
            n_scales *= shape[keep]
        if ga is not None:
            n_scales *= shape[ga] // int(self.group_size)
        return (math.ceil(n * self.bits / 8) * 8 + per_scale * n_scales) / n
