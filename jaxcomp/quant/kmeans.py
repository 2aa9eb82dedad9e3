"""1-D k-means over the non-zero weights of one tensor (Deep Compression's weight sharing).

Everything here is jit-compatible with static shapes: the weights are a flat
array, a boolean ``mask`` says which of them take part (pruned zeros do not),
and Lloyd's algorithm runs a fixed number of iterations in ``lax.fori_loop``.

Centroid initializations (Han et al. 2016, Sec. 3.2):

* ``"linear"`` — ``k`` points evenly spaced between the min and max weight;
* ``"random"`` — Forgy: ``k`` distinct weights drawn at random (explicit ``key``);
* ``"density"`` — the weights' CDF is spaced linearly on the y-axis: centroid
  ``j`` is the ``(j + 0.5) / k`` quantile of the weights.

Assignment is to the nearest centroid (ties go to the lower index, like
``argmin``); a centroid whose cluster is empty keeps its value.

Example:
    >>> import jax.numpy as jnp
    >>> from jaxcomp.quant.kmeans import kmeans1d
    >>> x = jnp.array([0.0, 1.0, 1.2, 0.9, -1.0, -1.1, 0.0])
    >>> c, idx = kmeans1d(x, x != 0, k=2, init="linear", iters=10)
    >>> [round(float(v), 3) for v in c], idx.tolist()
    ([-1.05, 1.033], [-1, 1, 1, 1, 0, 0, -1])
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxcomp.core.errors import ConfigError, check_choice
from jaxcomp.quant.uniform import check_finite

INITS = ("linear", "random", "density")


def _masked_min_max(x: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    lo = jnp.min(jnp.where(mask, x, jnp.inf))
    hi = jnp.max(jnp.where(mask, x, -jnp.inf))
    # No selected weight at all: fall back to a harmless [0, 0] range.
    ok = jnp.any(mask)
    return jnp.where(ok, lo, 0.0), jnp.where(ok, hi, 0.0)


def linear_init(x: jax.Array, mask: jax.Array, k: int) -> jax.Array:
    """``k`` centroids evenly spaced between the smallest and largest selected weight."""
    lo, hi = _masked_min_max(x, mask)
    return jnp.linspace(0.0, 1.0, k, dtype=x.dtype) * (hi - lo) + lo


def random_init(x: jax.Array, mask: jax.Array, k: int, key: jax.Array) -> jax.Array:
    """Forgy initialization: ``k`` distinct selected weights drawn uniformly (sorted).

    Uses the Gumbel top-k trick, so it is jit-safe with static shapes. If fewer
    than ``k`` weights are selected, unselected ones fill the rest.
    """
    g = jax.random.gumbel(key, x.shape, jnp.float32)
    scores = jnp.where(mask, g, g - 1e9)
    _, pos = jax.lax.top_k(scores, k)
    return jnp.sort(x[pos])


def density_init(x: jax.Array, mask: jax.Array, k: int) -> jax.Array:
    """Centroids at the ``(j + 0.5) / k`` quantiles of the selected weights (linear CDF)."""
    n_sel = jnp.sum(mask)
    # Selected weights first, in ascending order; the rest (sorted to +inf) after.
    s = jnp.sort(jnp.where(mask, x, jnp.inf))
    q = (jnp.arange(k, dtype=jnp.float32) + 0.5) / k
    pos = q * jnp.maximum(n_sel - 1, 0).astype(jnp.float32)
    lo = jnp.floor(pos).astype(jnp.int32)
    hi = jnp.minimum(lo + 1, jnp.maximum(n_sel - 1, 0))
    frac = (pos - lo).astype(x.dtype)
    c = s[lo] * (1 - frac) + s[hi] * frac
    return jnp.where(n_sel > 0, c, jnp.zeros_like(c))


def init_centroids(x: jax.Array, mask: jax.Array, k: int, init: str = "linear",
                   key: jax.Array | None = None) -> jax.Array:
    """Initial centroids by name (see the module docstring)."""
    check_choice("sharing.init", init, INITS)
    if init == "linear":
        return linear_init(x, mask, k)
    if init == "density":
        return density_init(x, mask, k)
    if key is None:
        raise ConfigError("sharing.key: init='random' needs an explicit jax.random key; got None")
    return random_init(x, mask, k, key)


def assign(x: jax.Array, centroids: jax.Array) -> jax.Array:
    """Index of the nearest centroid for each weight (first index on ties)."""
    d = jnp.abs(x[:, None] - centroids[None, :])
    return jnp.argmin(d, axis=1).astype(jnp.int32)


def assign_sorted(x: jax.Array, centroids: jax.Array) -> jax.Array:
    """:func:`assign` for ascending ``centroids``, by binary search on the midpoints.

    ``O(n log k)`` instead of ``O(n k)``; a weight exactly at a midpoint goes to
    the lower centroid, as with ``argmin``.
    """
    mid = (centroids[:-1] + centroids[1:]) / 2
    return jnp.searchsorted(mid, x, side="left", method="compare_all"
                            if centroids.shape[0] <= 16 else "scan").astype(jnp.int32)


def lloyd_step(x: jax.Array, mask: jax.Array, centroids: jax.Array) -> jax.Array:
    """One Lloyd iteration: assign, then move each centroid to its cluster's mean.

    ``centroids`` must be ascending; 1-D Lloyd iterations keep them so.
    """
    k = centroids.shape[0]
    idx = assign_sorted(x, centroids)
    w = mask.astype(x.dtype)
    sums = jax.ops.segment_sum(x * w, idx, num_segments=k)
    counts = jax.ops.segment_sum(w, idx, num_segments=k)
    return jnp.where(counts > 0, sums / jnp.maximum(counts, 1), centroids)


def kmeans1d(x: jax.Array, mask: jax.Array | None = None, *, k: int, init: str = "linear",
             iters: int = 20, key: jax.Array | None = None,
             centroids: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Cluster the selected entries of a 1-D array into ``k`` shared values.

    Args:
      x: the weights, any shape (flattened internally).
      mask: which weights take part (default: the non-zero ones). Unselected
        weights get index ``-1`` and never move a centroid.
      k: the number of clusters (static), ``2 <= k <= x.size``.
      init: ``"linear"``, ``"random"`` (needs ``key``) or ``"density"``.
      iters: Lloyd iterations (static; run in ``lax.fori_loop``).
      key: the random key for ``init="random"``.
      centroids: start from these instead of ``init`` (shape ``(k,)``; sorted first).

    Returns:
      ``(centroids, index)``: ascending ``centroids`` of shape ``(k,)`` and an int32
      ``index`` shaped like ``x`` (``-1`` where ``mask`` is false).

    Raises:
      ConfigError: ``k`` outside ``[2, x.size]``, negative ``iters``, unknown init.
    """
    shape = jnp.shape(x)
    x = jnp.ravel(x)
    if mask is not None and jnp.size(mask) != x.size:
        raise ConfigError(f"sharing.mask: got shape {tuple(jnp.shape(mask))}; expected the "
                          f"shape of x {tuple(shape)}")
    mask = (x != 0) if mask is None else jnp.ravel(mask).astype(bool)
    check_k(k, x.size)
    check_finite(x, "sharing: x")
    if not isinstance(iters, int) or iters < 0:
        raise ConfigError(f"sharing.iters: got {iters!r}; allowed: an integer >= 0")
    if centroids is not None:
        centroids = jnp.asarray(centroids, x.dtype)
        if centroids.shape != (k,):
            raise ConfigError(f"sharing.centroids: got shape {centroids.shape}; expected ({k},)")
    elif init == "random" and key is None:
        raise ConfigError("sharing.key: init='random' needs an explicit jax.random key; got None")
    check_choice("sharing.init", init, INITS)
    c, idx = _kmeans_jit(x, mask, centroids, key, k=k, init=init, iters=iters)
    return c, idx.reshape(shape)


def _kmeans_core(x, mask, centroids, key, *, k, init, iters):
    c0 = init_centroids(x, mask, k, init, key) if centroids is None else centroids
    c0 = jnp.sort(c0)
    c = jax.lax.fori_loop(0, iters, lambda _, c: lloyd_step(x, mask, c), c0)
    return c, jnp.where(mask, assign_sorted(x, c), -1)


# One compiled program per (shape, k, init, iters), also when called eagerly.
_kmeans_jit = jax.jit(_kmeans_core, static_argnames=("k", "init", "iters"))


def check_k(k: Any, n: int, what: str = "sharing.k") -> int:
    """Raise ConfigError unless ``k`` is an integer in ``[2, n]``."""
    if isinstance(k, bool) or not isinstance(k, int):
        raise ConfigError(f"{what}: got {k!r}; allowed: an integer in [2, {n}]")
    if k < 2 or k > n:
        raise ConfigError(f"{what}: got {k}; allowed range [2, {n}] (2 up to the number of "
                          "weights)")
    return k


def reconstruct(centroids: jax.Array, index: jax.Array) -> jax.Array:
    """The shared weights ``centroids[index]``, with ``0`` where ``index == -1``."""
    safe = jnp.clip(index, 0, centroids.shape[0] - 1)
    return jnp.where(index >= 0, centroids[safe], jnp.zeros((), centroids.dtype))
