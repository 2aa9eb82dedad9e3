"""The :class:`Format` interface, the :class:`Packed` export record and the registry.

A format turns a float tensor into *parts* (codes as exact float32 values or
integers, plus scales) with JAX (:meth:`Format.quantize_parts`), and parts back
into values (:meth:`Format.dequantize_parts`). Everything else is built from
those two, so the three views agree bit for bit:

* ``fake_quant(x)`` = ``dequantize_parts(quantize_parts(x))`` with a
  straight-through gradient (1 inside the representable range, 0 outside);
* ``encode(x)`` packs the parts into bytes (:func:`pack_bits`; scales as uint8
  e8m0 / e4m3 codes or float32);
* ``decode(packed)`` unpacks them and calls the *same* ``dequantize_parts``.

Example:
    >>> import numpy as np
    >>> pack_bits(np.array([1, 2, 3, 15], np.uint8), 4).tolist()   # low nibble first
    [33, 243]
    >>> unpack_bits(pack_bits(np.arange(8, dtype=np.uint8), 3), 3, 8).tolist()
    [0, 1, 2, 3, 4, 5, 6, 7]
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxcomp.core.errors import ConfigError, suggest
from jaxcomp.quant.uniform import check_finite


# --------------------------------------------------------------------------- bits
def pack_bits(codes: np.ndarray, bits: int) -> np.ndarray:
    """Pack unsigned ``bits``-bit codes densely into uint8, little-endian bit order.

    ``ceil(n * bits / 8)`` bytes: 4-bit codes two per byte (low nibble first),
    6-bit codes four per three bytes, 2/3-bit codes four / eight per one / three bytes.
    """
    c = np.ascontiguousarray(codes, np.uint8).ravel()
    if bits == 8:
        return c.copy()
    if bits == 4:
        c = np.concatenate([c, np.zeros(len(c) % 2, np.uint8)])
        return (c[0::2] | (c[1::2] << 4)).astype(np.uint8)
    planes = (c[:, None] >> np.arange(bits, dtype=np.uint8)) & 1
    return np.packbits(planes.ravel(), bitorder="little")


def unpack_bits(buf: np.ndarray, bits: int, n: int) -> np.ndarray:
    """The ``n`` codes :func:`pack_bits` packed (uint8)."""
    buf = np.asarray(buf, np.uint8)
    if bits == 8:
        return buf[:n].copy()
    if bits == 4:
        out = np.empty(2 * len(buf), np.uint8)
        out[0::2], out[1::2] = buf & 15, buf >> 4
        return out[:n]
    planes = np.unpackbits(buf, bitorder="little", count=n * bits).reshape(n, bits)
    return (planes << np.arange(bits, dtype=np.uint8)).sum(1, dtype=np.uint8)


# --------------------------------------------------------------------------- STE
@jax.custom_vjp
def ste(x: jax.Array, y: jax.Array, mask: jax.Array) -> jax.Array:
    """``y`` in the forward pass (bit for bit); gradient ``mask`` with respect to ``x``."""
    del x, mask
    return y


def _ste_fwd(x, y, mask):
    return y, mask


def _ste_bwd(mask, g):
    return (g * mask.astype(g.dtype), jnp.zeros_like(g), jnp.zeros_like(mask))


ste.defvjp(_ste_fwd, _ste_bwd)


# --------------------------------------------------------------------------- helpers
def input_axis(axis: int | None, ndim: int) -> int:
    """``axis`` as a non-negative int; ``None`` means the input features (``ndim - 2``,
    or 0 for a vector): a Flax kernel ``(..., in, out)`` is blocked along ``in``."""
    if axis is None:
        return max(ndim - 2, 0)
    if not -ndim <= axis < ndim:
        raise ConfigError(f"axis: got {axis!r} for a tensor of rank {ndim}; allowed "
                          f"[{-ndim}, {ndim - 1}] or None (the input axis)")
    return axis % ndim


def check_block(shape: tuple[int, ...], axis: int, block: int, what: str, opt: str) -> None:
    """ConfigError unless ``block`` divides ``shape[axis]``, naming the leaf and shape."""
    n = shape[axis] if shape else 1
    if n % block:
        ok = [d for d in (16, 32, 64, 128) if n % d == 0]
        raise ConfigError(
            f"{what} of shape {tuple(shape)}: {opt}={block} does not divide axis {axis} of "
            f"size {n}; allowed: an axis whose size is a multiple of {block}"
            + (f" (sizes that divide {n}: {ok})" if ok else "")
            + "; pad the layer, choose another axis, or leave it out with where=")


def to_blocks(x: jax.Array, axis: int, block: int) -> jax.Array:
    """``x`` with ``axis`` moved last and split into ``(n // block, block)``."""
    x = jnp.moveaxis(x, axis, -1)
    return x.reshape(x.shape[:-1] + (x.shape[-1] // block, block))


def from_blocks(xb: jax.Array, shape: tuple[int, ...], axis: int) -> jax.Array:
    """Invert :func:`to_blocks` for a tensor of ``shape``."""
    moved = tuple(s for i, s in enumerate(shape) if i != axis) + (shape[axis],)
    return jnp.moveaxis(xb.reshape(moved), -1, axis)


def pow2(k: jax.Array) -> jax.Array:
    """Exactly ``2.0 ** k`` in float32 for integer ``k`` in ``[-149, 127]`` (bit patterns)."""
    k = jnp.asarray(k, jnp.int32)
    normal = jnp.left_shift(jnp.clip(k, -126, 127) + 127, 23)
    sub = jnp.left_shift(jnp.int32(1), jnp.clip(k + 149, 0, 22))
    return jax.lax.bitcast_convert_type(jnp.where(k >= -126, normal, sub), jnp.float32)


# --------------------------------------------------------------------------- records
@dataclasses.dataclass(frozen=True)
class Packed:
    """An exported tensor: packed code and scale arrays plus what decoding needs.

    ``nbytes`` counts the arrays only (codes and scales); the format name, shape,
    dtype and options are a few bytes of metadata per tensor.
    """

    format: str
    shape: tuple[int, ...]
    dtype: str
    opts: Mapping[str, Any]
    arrays: Mapping[str, np.ndarray]

    @property
    def nbytes(self) -> int:
        return int(sum(np.asarray(a).nbytes for a in self.arrays.values()))


@dataclasses.dataclass(frozen=True)
class Format:
    """A number format: fake-quant with an STE, and an exact packed export.

    Subclasses define :meth:`quantize_parts`, :meth:`dequantize_parts`,
    :meth:`mask`, :meth:`pack`, :meth:`unpack` and :meth:`bits_per_value`; their
    dataclass fields other than ``name`` are the options ``configure`` accepts.
    """

    name: str = ""
    FIXED: ClassVar[tuple[str, ...]] = ("name",)

    # -- options
    def options(self) -> dict[str, Any]:
        """The configurable options and their current values."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in self.FIXED}

    def configure(self, **opts: Any) -> Format:
        """A copy with some options changed (unknown options are a ConfigError)."""
        allowed = self.options()
        for k in opts:
            if k not in allowed:
                raise ConfigError(f"format {self.name!r}: unknown option {k!r}; allowed: "
                                  f"{sorted(allowed)}{suggest(k, allowed)}")
        out = dataclasses.replace(self, **opts) if opts else self
        out.validate()
        return out

    def validate(self) -> None:
        """ConfigError for option values out of range (subclasses extend)."""

    def check_shape(self, shape: tuple[int, ...], what: str = "x") -> None:
        """ConfigError if a tensor of ``shape`` cannot use this format (block sizes)."""

    # -- to be defined by each format
    def quantize_parts(self, x: jax.Array) -> dict[str, jax.Array]:
        raise NotImplementedError

    def dequantize_parts(self, parts: Mapping[str, jax.Array],
                         shape: tuple[int, ...]) -> jax.Array:
        raise NotImplementedError

    def mask(self, x: jax.Array, parts: Mapping[str, jax.Array]) -> jax.Array:
        """Where the straight-through gradient is 1 (inside the representable range)."""
        return jnp.ones(x.shape, bool)

    def pack(self, parts: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def unpack(self, arrays: Mapping[str, np.ndarray],
               shape: tuple[int, ...]) -> dict[str, jax.Array]:
        raise NotImplementedError

    def bits_per_value(self, shape: tuple[int, ...] | None = None) -> float:
        """Bits at rest per element: codes plus scales. Without ``shape``, the
        nominal value (per-block scales counted; per-tensor / per-channel ones not)."""
        raise NotImplementedError

    # -- shared
    def _check(self, x: Any, what: str, check: bool) -> jax.Array:
        x = jnp.asarray(x)
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise ConfigError(f"{what}: dtype {x.dtype}; format {self.name!r} quantizes "
                              f"floating-point tensors only (cast it, or leave it out with "
                              f"where=)")
        self.check_shape(tuple(x.shape), what)
        if check:
            check_finite(x, what)
        return x

    def fake_quant(self, x: jax.Array, *, what: str = "x", check: bool = True,
                   **opts: Any) -> jax.Array:
        """Quantize and dequantize ``x`` (its dtype kept); straight-through gradient.

        ``what`` names ``x`` in errors (a parameter path). ``check=False`` skips
        the NaN/inf check of concrete inputs (traced inputs are never checked).
        """
        f = self.configure(**opts)
        x = f._check(x, what, check)
        return _fake_quant(f, x)

    def encode(self, x: Any, *, what: str = "x", check: bool = True, **opts: Any) -> Packed:
        """``x`` as packed bytes; :meth:`decode` gives back ``fake_quant(x)`` exactly."""
        f = self.configure(**opts)
        x = f._check(x, what, check)
        parts = _quantize(f, x.astype(jnp.float32))
        arrays = f.pack({k: np.asarray(v) for k, v in parts.items()})
        return Packed(f.name, tuple(x.shape), str(x.dtype), f.options(), arrays)

    def decode(self, packed: Packed) -> jax.Array:
        """The values a :class:`Packed` stands for (bitwise equal to ``fake_quant``)."""
        f = self.configure(**dict(packed.opts))
        parts = f.unpack(packed.arrays, tuple(packed.shape))
        return _dequantize(f, parts, tuple(packed.shape), jnp.dtype(packed.dtype))

    def nbytes(self, packed: Packed) -> int:
        """Bytes of a packed tensor's arrays."""
        return packed.nbytes


# The three views are compiled the same way (XLA may rewrite a division by a
# broadcast scale into a multiplication, so an op-by-op run could differ in the last
# bit from a compiled one); inside a user's jit these calls are inlined.
@functools.partial(jax.jit, static_argnums=0)
def _quantize(f: Format, x: jax.Array) -> dict[str, jax.Array]:
    return f.quantize_parts(x)


@functools.partial(jax.jit, static_argnums=(0, 2, 3))
def _dequantize(f: Format, parts: Mapping[str, jax.Array], shape: tuple[int, ...],
                dtype: Any) -> jax.Array:
    return f.dequantize_parts(parts, shape).astype(dtype)


@functools.partial(jax.jit, static_argnums=0)
def _fake_quant(f: Format, x: jax.Array) -> jax.Array:
    xs = jax.lax.stop_gradient(x).astype(jnp.float32)
    parts = _quantize(f, xs)
    y = _dequantize(f, parts, tuple(x.shape), x.dtype)
    return ste(x, y, f.mask(xs, parts).astype(jnp.float32))


# --------------------------------------------------------------------------- registry
FORMATS: dict[str, Format] = {}


def register_format(name: str, fmt: Format, *, overwrite: bool = False) -> Format:
    """Add ``fmt`` to :data:`FORMATS` under ``name`` (its ``name`` set to it)."""
    if not isinstance(fmt, Format):
        raise ConfigError(f"register_format({name!r}): expected a Format, got "
                          f"{type(fmt).__name__}")
    if name in FORMATS and not overwrite:
        raise ConfigError(f"register_format: {name!r} is already registered "
                          f"(pass overwrite=True to replace it)")
    fmt = dataclasses.replace(fmt, name=name)
    fmt.validate()
    FORMATS[name] = fmt
    return fmt


def get_format(name: str | Format, **opts: Any) -> Format:
    """The registered format ``name`` with ``opts`` applied.

    Example:
        >>> get_format("mxfp4").bits_per_value()
        4.25
        >>> get_format("mxfp5")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        jaxcomp.core.errors.ConfigError: format: got 'mxfp5'; ...
    """
    if isinstance(name, Format):
        return name.configure(**opts)
    if name not in FORMATS:
        raise ConfigError(f"format: got {name!r}; registered: {sorted(FORMATS)}"
                          f"{suggest(str(name), FORMATS)}")
    return FORMATS[name].configure(**opts)


def decode(packed: Packed) -> jax.Array:
    """Decode a :class:`Packed` with the format it names."""
    return get_format(packed.format).decode(packed)
