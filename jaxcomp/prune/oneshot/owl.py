"""OWL (Yin et al. 2024): non-uniform layer-wise sparsity from outlier ratios.

A block's *outlier ratio* ``D`` is the fraction of its Wanda scores
``|w_ij| · ||X_i||`` that exceed ``m`` times their layer's mean score (over all
the block's linears, inputs from the dense model). Blocks with more outliers
are pruned less: ratios are scaled to ``[0, 2λ]``, centred, and added to the
target *density*, so block sparsities lie in ``[s - λ, s + λ]`` and their mean
is the target ``s`` (the whole model's sparsity when blocks have equal size).

Example:
    >>> import numpy as np
    >>> owl_from_ratios(np.array([0.01, 0.03, 0.02]), 0.5, lam=0.1).round(3).tolist()
    [0.6, 0.4, 0.5]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcomp.core import paths as _paths
from jaxcomp.core.errors import ConfigError, check_number
from jaxcomp.quant.calib.passes import reduce_taps


def owl_from_ratios(ratios: Any, sparsity: float, *, lam: float) -> np.ndarray:
    """Per-block sparsities from outlier ratios (``lam`` = λ, the half-range).

    Raises:
      ConfigError: ``lam`` outside ``[0, min(s, 1 - s))`` would give a block sparsity
        outside ``[0, 1)``.
    """
    check_number("owl.sparsity", sparsity, 0.0, 1.0, hi_open=True)
    check_number("owl.lam", lam, 0.0, None)
    if sparsity - lam < 0 or sparsity + lam >= 1:
        raise ConfigError(f"owl.lam: got {lam!r} with target sparsity {sparsity}; block "
                          f"sparsities would leave [0, 1); allowed: 0 <= lam <= "
                          f"{min(sparsity, 1 - sparsity):g} (and < for the upper end)")
    r = np.asarray(ratios, np.float64)
    span = r.max() - r.min()
    scaled = (r - r.min()) / span * 2 * lam if span > 0 else np.zeros_like(r)
    density = scaled - scaled.mean() + (1 - sparsity)
    return np.clip(1 - density, 0.0, 1 - 1e-6)


def _sq_init(dim: int) -> jax.Array:
    return jnp.zeros((dim,), jnp.float32)


def _sq_update(acc: jax.Array, v: jax.Array) -> jax.Array:
    v32 = v.reshape(-1, v.shape[-1]).astype(jnp.float32)
    return acc + jnp.sum(v32 * v32, axis=0)


def outlier_ratios(blocks: Sequence[Any], xs: Sequence[jax.Array], *,
                   m: float = 5.0) -> np.ndarray:
    """The outlier ratio of each block, with the dense blocks' activations."""
    check_number("owl.m", m, 0.0, None, lo_open=True)
    out = []
    for i, blk in enumerate(blocks):
        leaves = _paths.path_dict(blk.params)
        sums, xs = reduce_taps(blk.apply, blk.params, xs, tuple(blk.linears), _sq_init,
                               _sq_update, outputs=True, donate=i > 0, where=f"blocks[{i}]")
        n_out = n_tot = 0
        for p in blk.linears:
            s = jnp.abs(leaves[p].astype(jnp.float32)) * jnp.sqrt(sums[p])[:, None]
            n_out += int(jnp.sum(s > m * jnp.mean(s)))
            n_tot += s.size
        out.append(n_out / n_tot)
    return np.asarray(out)


def owl_sparsities(blocks: Sequence[Any], xs: Sequence[jax.Array], sparsity: float, *,
                   lam: float = 0.08, m: float = 5.0) -> np.ndarray:
    """OWL's per-block sparsities around ``sparsity`` (one dense pass over ``xs``)."""
    return owl_from_ratios(outlier_ratios(blocks, xs, m=m), sparsity, lam=lam)
