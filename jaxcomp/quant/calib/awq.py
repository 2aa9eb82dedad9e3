"""AWQ (Lin et al. 2023): activation-aware per-input-channel weight scaling.

For a linear ``y = x @ w`` (``w`` of shape ``(in, out)``), AWQ searches
``s = mean|x|^α`` (normalized so that ``sqrt(max(s) min(s)) = 1``) over a grid
of ``α`` in ``[0, 1]`` and keeps the one whose quantized layer
``(x / s) @ Q(diag(s) w)`` is closest to the float output. Salient input
channels (large ``|x|``) get scaled up before quantization, so their
weights lose less relative precision.

The output error needs only the calibration statistics:
``||x w - (x/s) Q(diag(s) w)||² = tr(Δᵀ XᵀX Δ)`` with
``Δ = w - diag(1/s) Q(diag(s) w)``, so :func:`awq` takes raw inputs *or* a
:class:`~jaxcomp.quant.calib.stats.LayerStats` (what the block driver
collects); no activations are kept. ``α = 0`` is round-to-nearest, so on the
calibration data AWQ is never worse than RTN.

Use the result either by folding ``1 / s`` into the previous op
(:mod:`jaxcomp.quant.calib.fold`) and using ``w_q`` as the kernel, or, with no
previous op to fold into, by the float kernel :func:`effective_kernel`
(``w_q / s``, same function).

Example:
    >>> import jax, jax.numpy as jnp
    >>> x = jax.random.normal(jax.random.key(0), (256, 32)) * jnp.where(
    ...     jnp.arange(32) < 2, 20.0, 1.0)
    >>> w = jax.random.normal(jax.random.key(1), (32, 16))
    >>> r = awq(w, x, bits=3, group_size=16, sym=False)
    >>> bool(r.loss.min() <= r.loss[0])      # the best α is no worse than RTN (α = 0)
    True
    >>> y = (x / r.scales) @ r.w_q           # with 1/s folded into the previous op
    >>> bool(jnp.allclose(y, x @ effective_kernel(r), rtol=1e-4, atol=1e-3))
    True

References:
    Lin et al. 2023, "AWQ: Activation-aware Weight Quantization for LLM
    Compression and Acceleration".
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxcomp.core.errors import ConfigError
from jaxcomp.quant.calib._common import (
    check_group,
    check_weight,
    check_weight_bits,
    rtn,
)
from jaxcomp.quant.calib.stats import LayerStats, absmean, stats_init, stats_update


class AWQResult(NamedTuple):
    """AWQ's choice for one layer.

    ``w_q`` is the dequantized ``Q(diag(s) w)`` (feed it ``x / scales``);
    ``codes`` / ``qscales`` / ``zeros`` its integer form (``(n_groups, out)``
    params); ``alpha`` the chosen exponent; ``loss`` the output error for each
    grid point.
    """

    scales: jax.Array
    w_q: jax.Array
    codes: jax.Array
    qscales: jax.Array
    zeros: jax.Array
    alpha: jax.Array
    loss: jax.Array


def effective_kernel(r: AWQResult) -> jax.Array:
    """The float kernel ``diag(1/s) Q(diag(s) w)`` that reads the unscaled input."""
    return r.w_q / r.scales[:, None]


def candidate_scales(act_absmean: jax.Array, alpha: jax.Array) -> jax.Array:
    """``mean|x|^α`` normalized to a geometric mean of max and min of 1."""
    s = jnp.maximum(act_absmean, 1e-4) ** alpha
    return s / jnp.sqrt(jnp.max(s) * jnp.min(s))


@functools.partial(jax.jit, static_argnames=("bits", "group_size", "sym", "n_grid"))
def _search(w, xtx, act_absmean, *, bits, group_size, sym, n_grid):
    w = w.astype(jnp.float32)
    alphas = jnp.linspace(0.0, 1.0, n_grid)

    def loss_of(alpha):
        s = candidate_scales(act_absmean, alpha)
        dq = rtn(w * s[:, None], bits=bits, group_size=group_size, sym=sym)[0]
        d = w - dq / s[:, None]
        return jnp.sum(d * jnp.dot(xtx, d, precision=jax.lax.Precision.HIGHEST))

    losses = jax.lax.map(loss_of, alphas)   # one candidate alive at a time
    best = jnp.argmin(losses)
    s = candidate_scales(act_absmean, alphas[best])
    dq, q, qs, z = rtn(w * s[:, None], bits=bits, group_size=group_size, sym=sym)
    return AWQResult(s, dq, q, qs, z, alphas[best], losses)


def awq(w: jax.Array, x: jax.Array | LayerStats, *, bits: int, group_size: int | None,
        sym: bool, n_grid: int = 20, path: str = "<layer>") -> AWQResult:
    """Search AWQ's per-input-channel scales for one ``(in, out)`` kernel.

    Args:
      w: the float kernel; kernels that share an input should be concatenated
        along ``out`` (:func:`~jaxcomp.quant.calib.fold.concat_out`) so they
        get one ``s``.
      x: calibration inputs ``(..., in)`` or their ``LayerStats``.
      bits, group_size, sym: the weight quantizer (groups along ``in``).
      n_grid: number of ``α`` values in ``linspace(0, 1, n_grid)``.
      path: the layer's name for error messages.
    """
    check_weight(w, path)
    n_in = w.shape[0]
    bits = check_weight_bits(bits, path)
    group_size = check_group(group_size, n_in, path)
    if not isinstance(n_grid, int) or n_grid < 1:
        raise ConfigError(f"{path}: n_grid: got {n_grid!r}; allowed: an int >= 1")
    st = x if isinstance(x, LayerStats) else stats_update(stats_init(x.shape[-1]), x)
    if st.xtx.shape != (n_in, n_in):
        raise ConfigError(f"{path}: x: inputs have {st.xtx.shape[0]} channels; the kernel "
                          f"{tuple(w.shape)} expects {n_in}")
    return _search(w, st.xtx, absmean(st), bits=bits, group_size=group_size, sym=bool(sym),
                   n_grid=n_grid)
