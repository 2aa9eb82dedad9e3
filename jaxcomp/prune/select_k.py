"""Exact "the z smallest scores" masks without sorting: bisection over float bit patterns.

A float32 score is mapped to a ``uint32`` key whose unsigned order is the
float order (:func:`order_keys`). The ``z``-th smallest key is found by
bisection on the key range (starting from ``[min, max]``) — each step counts
``key <= mid`` over every leaf, at most 32 steps, stopping early when a count
is exactly ``z``. Elements tied at the threshold are taken in index order
(leaf order, then row-major index), found by a second bisection over the
index that only runs when a tie must be split. The count is exactly ``z`` —
no full sort, jit-safe, ``z`` may be traced (so ``vmap`` over sparsities works).

Arrays can be split into *groups* that are selected independently in the same
loop (one group per leaf = layer-wise, one group for all leaves = global), so
a model with many leaves compiles one loop, not one per leaf.

Example:
    >>> import jax.numpy as jnp
    >>> from jaxcomp.prune.select_k import smallest_k
    >>> [m.astype(int).tolist() for m in smallest_k([jnp.array([3., 1., 2., 1.])], 2)]
    [[0, 1, 0, 1]]
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

_SIGN = 0x80000000


def order_keys(x: jax.Array) -> jax.Array:
    """A ``uint32`` key per element whose unsigned order is the float order of ``x``.

    Non-negative floats get their bit pattern with the sign bit set; negative
    floats get the complement of their bit pattern. ``-0.0`` sorts just below
    ``+0.0``; NaNs sort above ``+inf`` (positive NaN) or below ``-inf``.

    Example:
        >>> import jax.numpy as jnp
        >>> k = order_keys(jnp.array([-2.0, -0.5, 0.0, 0.5, 2.0]))
        >>> bool(jnp.all(k[1:] > k[:-1]))
        True
    """
    u = lax.bitcast_convert_type(jnp.asarray(x, jnp.float32), jnp.uint32)
    neg = (u & jnp.uint32(_SIGN)) != 0
    return jnp.where(neg, ~u, u | jnp.uint32(_SIGN))


def smallest_k(keys_or_scores: Sequence[jax.Array], z, *, keys: bool = False
               ) -> list[jax.Array]:
    """Bool masks marking exactly the ``z`` smallest elements over all given arrays.

    Args:
      keys_or_scores: float arrays (or ``uint32`` keys from :func:`order_keys`
        with ``keys=True``); they are ranked together, as one flat vector in
        the given order.
      z: how many to mark (an int or a traced int32 scalar), clipped to ``[0, n]``.
      keys: the inputs are already ``uint32`` order keys.

    Returns:
      One bool array per input, same shapes; exactly ``z`` ``True`` in total.
      Ties are broken by position (earlier arrays, then lower row-major index, first).
    """
    arrs = list(keys_or_scores)
    return smallest_k_groups(arrs, (0,) * len(arrs), jnp.reshape(jnp.asarray(z), (1,)),
                             keys=keys)


def smallest_k_groups(keys_or_scores: Sequence[jax.Array], groups: Sequence[int], z,
                      *, keys: bool = False) -> list[jax.Array]:
    """Like :func:`smallest_k`, for several independent groups in one loop.

    Args:
      keys_or_scores: the arrays.
      groups: the group (``0..G-1``) of each array; arrays of a group are ranked together.
      z: ``(G,)`` counts, one per group.

    Example:
        >>> import jax.numpy as jnp
        >>> a, b = smallest_k_groups([jnp.array([2., 1.]), jnp.array([5., 3., 4.])], (0, 1),
        ...                          jnp.array([1, 2]))
        >>> a.tolist(), b.tolist()
        ([False, True], [False, True, True])
    """
    return _select(list(keys_or_scores), jnp.asarray(z, jnp.int32), tuple(int(g) for g in groups),
                   keys)


def _group_sum(values: list[jax.Array], groups: tuple[int, ...], num: int) -> jax.Array:
    out = [jnp.zeros((), jnp.int32) for _ in range(num)]
    for v, g in zip(values, groups, strict=True):
        out[g] = out[g] + v
    return jnp.stack(out)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _select(arrays, z, groups, keys):
    # jitted once per shape signature, so eager callers do not recompile the loops
    ks = [a if keys else order_keys(a) for a in arrays]
    num = max(groups) + 1
    sizes = [0] * num
    offsets = []
    for k, g in zip(ks, groups, strict=True):
        offsets.append(sizes[g])
        sizes[g] += int(k.size)
    n = jnp.asarray(sizes, jnp.int32)
    z = jnp.clip(jnp.broadcast_to(z, (num,)), 0, n)

    def count(fn):
        return _group_sum([jnp.sum(fn(k, g), dtype=jnp.int32) for k, g in zip(ks, groups,
                                                                               strict=True)],
                          groups, num)

    # the answer lies in [min key, max key] of its group
    big = jnp.uint32(0xFFFFFFFF)
    lo = jnp.full((num,), big)
    hi = jnp.zeros((num,), jnp.uint32)
    for k, g in zip(ks, groups, strict=True):
        lo = lo.at[g].min(jnp.min(k))
        hi = hi.at[g].max(jnp.max(k))

    def cond(c):
        lo, hi, done = c
        return jnp.any((lo < hi) & ~done)

    def body(c):
        lo, hi, done = c
        mid = lo + (hi - lo) // 2
        cnt = count(lambda k, g: k <= mid[g])
        active = (lo < hi) & ~done
        enough = cnt >= z
        new_lo = jnp.where(active & ~enough, mid + 1, lo)
        new_hi = jnp.where(active & enough, mid, hi)
        return new_lo, new_hi, done | (active & (cnt == z))

    _, t, _ = lax.while_loop(cond, body, (lo, hi, jnp.zeros((num,), bool)))
    c_lt = count(lambda k, g: k < t[g])
    c_eq = count(lambda k, g: k == t[g])
    need = z - c_lt
    simple = (need >= c_eq) | (need <= 0)
    simple_cut = jnp.where(need <= 0, 0, n)

    def index(k, g_off):
        return jnp.arange(k.size, dtype=jnp.int32).reshape(k.shape) + g_off

    def split_ties(_):
        # per group, the smallest cut with #(key == t and index < cut) >= need
        def body(c):
            lo, hi = c
            mid = lo + (hi - lo) // 2
            cnt = count_below(mid)
            ok = cnt >= need
            active = lo < hi
            return jnp.where(active & ~ok, mid + 1, lo), jnp.where(active & ok, mid, hi)

        def count_below(cut):
            vals = [jnp.sum((k == t[g]) & (index(k, o) < cut[g]), dtype=jnp.int32)
                    for k, g, o in zip(ks, groups, offsets, strict=True)]
            return _group_sum(vals, groups, num)

        lo0 = jnp.where(simple, simple_cut, 0)
        hi0 = jnp.where(simple, simple_cut, n)
        _, cut = lax.while_loop(lambda c: jnp.any(c[0] < c[1]), body, (lo0, hi0))
        return cut

    cut = lax.cond(jnp.all(simple), lambda _: simple_cut, split_ties, None)
    return [(k < t[g]) | ((k == t[g]) & (index(k, o) < cut[g]))
            for k, g, o in zip(ks, groups, offsets, strict=True)]


def count_for(sparsity, n: int) -> jax.Array:
    """``round(sparsity * n)`` as int32 (``sparsity`` may be traced; float32 arithmetic)."""
    s = jnp.asarray(sparsity, jnp.float32)
    return jnp.clip(jnp.round(s * jnp.float32(n)), 0, n).astype(jnp.int32)
