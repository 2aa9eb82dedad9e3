"""SmoothQuant (Xiao et al. 2023): migrate activation outliers into the weights.

Per input channel ``j`` of a linear ``y = x @ w``:
``s_j = max|X_j|^α / max|W_j|^(1-α)`` (``α`` = migration strength, 0.5 by
default; ``W_j`` = row ``j`` of the ``(in, out)`` kernel, over every kernel
reading the same input). The layer becomes ``(x / s) @ (diag(s) w)``: ``1/s``
is folded into the previous op (:mod:`jaxcomp.quant.calib.fold`), ``s`` into
the kernel, and the float function is unchanged. The smoothed activations
have flatter channels, so W8A8 with one static per-tensor activation scale
loses less.

Example:
    >>> import jax, jax.numpy as jnp
    >>> x = jax.random.normal(jax.random.key(0), (128, 16)).at[:, 3].mul(60.0)
    >>> w = jax.random.normal(jax.random.key(1), (16, 8))
    >>> s = smooth_scales(jnp.abs(x).max(0), w, alpha=0.5)
    >>> ws = fold_smoothing(w, s)
    >>> bool(jnp.allclose((x / s) @ ws, x @ w, rtol=1e-4, atol=1e-3))
    True
    >>> naive = w8a8(x, w, jnp.abs(x).max(0))
    >>> smoothed = w8a8(x / s, ws, jnp.abs(x / s).max(0))
    >>> bool(jnp.linalg.norm(smoothed - x @ w) < jnp.linalg.norm(naive - x @ w))
    True

References:
    Xiao et al. 2023, "SmoothQuant: Accurate and Efficient Post-Training
    Quantization for Large Language Models".
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxcomp.core.errors import check_range
from jaxcomp.quant.calib.actquant import per_channel_weight, per_tensor, per_tensor_scale
from jaxcomp.quant.calib.fold import scale_inputs


def smooth_scales(act_absmax: jax.Array, w: jax.Array, alpha: float = 0.5) -> jax.Array:
    """SmoothQuant's per-input-channel factors ``s`` (``(in,)``).

    Channels that are never active, or whose weights are all zero, get ``s = 1``.
    """
    check_range("smoothquant.alpha", alpha, 0.0, 1.0)
    a = jnp.asarray(act_absmax, jnp.float32)
    wmax = jnp.max(jnp.abs(w), axis=1).astype(jnp.float32)
    ok = (a > 0) & (wmax > 0)
    s = jnp.where(ok, a, 1.0) ** alpha / jnp.where(ok, wmax, 1.0) ** (1.0 - alpha)
    return jnp.where(ok, jnp.maximum(s, 1e-5), 1.0)


def fold_smoothing(w: jax.Array, s: jax.Array) -> jax.Array:
    """The kernel that reads smoothed inputs ``x / s``: ``diag(s) w``."""
    return scale_inputs(w, s)


def w8a8(x: jax.Array, w: jax.Array, act_absmax: jax.Array, *, w_bits: int = 8,
         a_bits: int = 8, bias: jax.Array | None = None) -> jax.Array:
    """A fake-quantized linear: static per-tensor activations (from the
    calibration maxima ``act_absmax``), symmetric per-output-channel weights."""
    xq = per_tensor(x, per_tensor_scale(act_absmax, a_bits), a_bits)
    y = xq @ per_channel_weight(w, w_bits)
    return y if bias is None else y + bias
