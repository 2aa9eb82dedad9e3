"""NormalFloat-4 (``nf4``): 16 levels from normal quantiles, block-wise absmax scales.

The levels follow the construction of Dettmers et al. (QLoRA): with
``p = (1 - 1/30 + 1 - 1/32) / 2`` (the mean of the outermost quantile positions
for 15 and 16 levels), 8 positive levels are the standard-normal quantiles at 9
points evenly spaced from ``p`` down to 0.5 (the last, 0, dropped), 7 negative
levels the mirrored quantiles at 8 such points, plus an exact zero; all are
divided by the largest, so the levels span ``[-1, 1]``. Each block of
``block_size`` (64) elements along the input axis is divided by its absmax
(float32) and every element takes the nearest level (the lower one at an exact
midpoint). Codes are 4-bit, two per byte.

Example:
    >>> import jax.numpy as jnp
    >>> from jaxcomp.quant.formats import get_format
    >>> [round(v, 4) for v in NF4_LEVELS[[0, 7, 8, 15]].tolist()]
    [-1.0, 0.0, 0.0796, 1.0]
    >>> get_format("nf4").encode(jnp.ones((64, 4))).nbytes      # 128 code bytes + 4 scales
    144

References:
    Dettmers et al. 2023, "QLoRA: Efficient Finetuning of Quantized LLMs".
"""

from __future__ import annotations

import dataclasses
import math
from statistics import NormalDist

import jax.numpy as jnp
import numpy as np

from jaxcomp.quant.formats.base import pack_bits, unpack_bits
from jaxcomp.quant.formats.floats import _BlockFormat


def nf4_levels() -> np.ndarray:
    """The 16 NF4 levels, ascending, as float32 (computed from normal quantiles)."""
    p = 0.5 * ((1 - 1 / 30) + (1 - 1 / 32))
    ppf = NormalDist().inv_cdf
    pos = [ppf(float(t)) for t in np.linspace(p, 0.5, 9)[:-1]]
    neg = [-ppf(float(t)) for t in np.linspace(p, 0.5, 8)[:-1]]
    v = np.sort(np.array(pos + neg + [0.0]))
    return (v / np.abs(v).max()).astype(np.float32)


NF4_LEVELS = nf4_levels()
_MIDPOINTS = ((NF4_LEVELS[1:] + NF4_LEVELS[:-1]) / 2).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class NF4Format(_BlockFormat):
    """NF4 codes with a float32 absmax per ``block_size`` (64) elements."""

    block_size: int = 64

    def quantize_parts(self, x):
        xb = self._blocks(x)
        absmax = jnp.max(jnp.abs(xb), axis=-1, keepdims=True)
        n = xb / jnp.where(absmax > 0, absmax, 1.0)
        code = jnp.sum(n[..., None] > jnp.asarray(_MIDPOINTS), axis=-1).astype(jnp.int32)
        return {"code": code, "absmax": absmax}

    def dequantize_parts(self, parts, shape):
        levels = jnp.asarray(NF4_LEVELS)[jnp.asarray(parts["code"], jnp.int32)]
        return self._unblock(levels * jnp.asarray(parts["absmax"], jnp.float32), shape)

    def pack(self, parts):
        return {"codes": pack_bits(np.asarray(parts["code"]).astype(np.uint8), 4),
                "absmax": np.asarray(parts["absmax"], np.float32)[..., 0]}

    def unpack(self, arrays, shape):
        codes = unpack_bits(arrays["codes"], 4, math.prod(shape)).astype(np.int32)
        return {"code": jnp.asarray(codes.reshape(self._moved_shape(shape))),
                "absmax": jnp.asarray(np.asarray(arrays["absmax"])[..., None])}

    def bits_per_value(self, shape=None):
        return 4 + 32 / self.block_size
