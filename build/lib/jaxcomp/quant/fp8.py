"""fp8 fake-quantization (e4m3, e5m2) through ``ml_dtypes``, with a scale and an STE.

``x`` is scaled so that ``max|x|`` (per tensor or per channel) maps to the
format's largest finite value, cast to fp8 and back, and rescaled. The
gradient is straight-through (1 everywhere: values never exceed the range).

Example:
    >>> import jax.numpy as jnp
    >>> from jaxcomp.quant.fp8 import fake_quant_fp8
    >>> x = jnp.array([0.1, -3.0, 448.0])
    >>> fake_quant_fp8(x, "e4m3").tolist()
    [0.1015625, -3.0, 448.0]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_dtypes

from jaxcomp.core.errors import check_choice
from jaxcomp.quant.uniform import Axis, check_finite, normalize_axis

FP8_FORMATS = {"e4m3": jnp.float8_e4m3fn, "e5m2": jnp.float8_e5m2}


def fp8_max(fmt: str) -> float:
    """The largest finite value of the fp8 format (448 for e4m3, 57344 for e5m2)."""
    check_choice("fp8 format", fmt, FP8_FORMATS)
    return float(ml_dtypes.finfo(FP8_FORMATS[fmt]).max)


def fake_quant_fp8(x: jax.Array, fmt: str = "e4m3", *, axis: Axis = None) -> jax.Array:
    """Round ``x`` to fp8 after scaling ``max|x|`` to the format's max; STE gradient."""
    check_choice("fp8 format", fmt, FP8_FORMATS)
    check_finite(x)
    keep = normalize_axis(axis, x.ndim)
    red = tuple(a for a in range(x.ndim) if a not in keep)
    amax = jnp.max(jnp.abs(jax.lax.stop_gradient(x)), axis=red, keepdims=True)
    scale = jnp.where(amax > 0, amax / fp8_max(fmt), 1.0).astype(jnp.float32)
    xf = x.astype(jnp.float32)
    y = (xf / scale).astype(FP8_FORMATS[fmt]).astype(jnp.float32) * scale
    return (xf + jax.lax.stop_gradient(y - xf)).astype(x.dtype)
