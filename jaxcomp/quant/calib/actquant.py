"""Activation fake-quantization for calibrated PTQ: per-token dynamic and
static per-tensor (calibrated) scales, int8 / int4 (any 2..8 bits).

* :func:`per_token` — each token (row over the last axis) gets its own
  symmetric (or asymmetric) scale at run time, as QuaRot's W4A4 does.
* :func:`per_tensor_scale` + :func:`per_tensor` — one static scale from the
  calibration ``max |x|`` (a :class:`~jaxcomp.quant.calib.stats.LayerStats`'
  ``absmax``), as SmoothQuant's W8A8 does.

Both return dequantized float values (fake-quant) with a straight-through
gradient inside the range.

Example:
    >>> import jax.numpy as jnp
    >>> x = jnp.array([[0.1, -1.0, 0.5], [10.0, 2.0, -4.0]])
    >>> [round(v, 3) for v in per_token(x, 8)[1].tolist()]  # row scale 10 / 127
    [10.0, 1.969, -4.016]
    >>> s = per_tensor_scale(jnp.array([1.0, 10.0, 4.0]), 8)
    >>> round(float(s) * 127, 5), round(per_tensor(x, s, 8)[0, 0].item() / float(s), 5)
    (10.0, 1.0)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxcomp.quant.uniform import check_bits, fake_quant, qrange, ste_fake_quant


def per_token(x: jax.Array, bits: int, *, sym: bool = True) -> jax.Array:
    """Dynamic per-token fake-quant: one scale per position over the last axis."""
    check_bits(bits)
    return fake_quant(x, bits, axis=tuple(range(x.ndim - 1)), symmetric=sym)


def per_tensor_scale(absmax: jax.Array, bits: int) -> jax.Array:
    """Symmetric static scale ``max |x| / qmax`` from calibration maxima (any shape)."""
    check_bits(bits)
    _, qmax = qrange(bits)
    m = jnp.max(absmax)
    return jnp.where(m > 0, m / qmax, 1.0)


def per_tensor(x: jax.Array, scale: jax.Array, bits: int) -> jax.Array:
    """Static symmetric per-tensor fake-quant with a calibrated ``scale``."""
    check_bits(bits)
    return ste_fake_quant(x, scale, jnp.zeros_like(scale), bits)


def per_channel_weight(w: jax.Array, bits: int) -> jax.Array:
    """Symmetric per-output-channel fake-quant of an ``(in, out)`` kernel."""
    return fake_quant(w, bits, axis=1)
