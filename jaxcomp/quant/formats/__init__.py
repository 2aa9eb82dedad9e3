"""Number formats, one registry entry each: int2…int8, fp8, MX (OCP Microscaling),
NVFP4 and NF4, each with a straight-through fake-quant and an exact packed export.

| name | elements | scales | nominal bits/value |
|---|---|---|---|
| ``int2`` … ``int8`` | b-bit integers | f32 per tensor / channel / group | b (+ 32/g) |
| ``fp8_e4m3``, ``fp8_e5m2`` | fp8 | f32 per tensor or channel | 8 |
| ``mxfp8`` (= ``mxfp8_e4m3``), ``mxfp8_e5m2`` | fp8 | e8m0 per 32 | 8.25 |
| ``mxfp6`` (= ``mxfp6_e2m3``), ``mxfp6_e3m2`` | fp6 | e8m0 per 32 | 6.25 |
| ``mxfp4`` | e2m1 | e8m0 per 32 | 4.25 |
| ``nvfp4`` | e2m1 | e4m3 per 16 + one f32 per tensor | 4.5 |
| ``nf4`` | 16 NormalFloat levels | f32 absmax per 64 | 4.5 |

Asymmetric int formats add an int8 zero point per scale. Blocks and groups run
along the input axis (``ndim - 2`` of a Flax kernel ``(..., in, out)``; pass
``axis=-1`` for activations ``(batch, features)``).

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp.quant.formats import get_format
    >>> w = jax.random.normal(jax.random.key(0), (256, 64))
    >>> f = get_format("mxfp4")
    >>> p = f.encode(w)
    >>> bool((f.decode(p) == f.fake_quant(w)).all()), p.nbytes / (w.size * 4.25 / 8)
    (True, 1.0)
    >>> jax.grad(lambda w: f.fake_quant(w).sum())(w).shape
    (256, 64)
"""

from jaxcomp.quant.formats.base import (
    FORMATS,
    Format,
    Packed,
    decode,
    get_format,
    pack_bits,
    register_format,
    unpack_bits,
)
from jaxcomp.quant.formats.floats import ELEMS, MXFormat, NVFP4Format, ScaledFloatFormat
from jaxcomp.quant.formats.ints import IntFormat
from jaxcomp.quant.formats.nf4 import NF4_LEVELS, NF4Format
from jaxcomp.quant.formats.transform import decode_tree, encode_tree, format_quant, packed_bytes


def _register_builtins() -> None:
    for b in range(2, 9):
        register_format(f"int{b}", IntFormat(bits=b), overwrite=True)
    for e in ("e4m3", "e5m2"):
        register_format(f"fp8_{e}", ScaledFloatFormat(elem=e), overwrite=True)
    for name, e in (("mxfp8", "e4m3"), ("mxfp8_e4m3", "e4m3"), ("mxfp8_e5m2", "e5m2"),
                    ("mxfp6", "e2m3"), ("mxfp6_e2m3", "e2m3"), ("mxfp6_e3m2", "e3m2"),
                    ("mxfp4", "e2m1")):
        register_format(name, MXFormat(elem=e), overwrite=True)
    register_format("nvfp4", NVFP4Format(), overwrite=True)
    register_format("nf4", NF4Format(), overwrite=True)


_register_builtins()

__all__ = [
    "ELEMS", "FORMATS", "NF4_LEVELS", "Format", "IntFormat", "MXFormat", "NF4Format",
    "NVFP4Format", "Packed", "ScaledFloatFormat", "decode", "decode_tree", "encode_tree",
    "format_quant", "get_format", "pack_bits", "packed_bytes", "register_format",
    "unpack_bits",
]
