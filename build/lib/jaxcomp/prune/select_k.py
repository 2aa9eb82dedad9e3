"""Exact "the z smallest scores" masks without sorting: radix select over float bit patterns.

A float32 score is mapped to a ``uint32`` key whose unsigned order is the
float order (:func:`order_keys`). The ``z``-th smallest key is found by a
radix select: one scatter-add histogram per 16-bit (or 11-bit) digit of the
key, most significant first, each narrowing the prefix to the bucket that
holds rank ``z`` — two passes over the data for 32-bit keys, whatever the
score distribution. Elements tied at the threshold are taken in index order
(leaf order, then row-major index), found by a second radix select over the
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


_CHUNK = 1 << 14  # elements per histogram scatter: bounds the temporary memory


def _digit_plan(total_bits: int, num_groups: int) -> list[tuple[int, int]]:
    """``(shift, bits)`` of each radix digit, most significant first."""
    width = 16 if num_groups <= 2 else 11  # bins per group: 65536 or 2048
    plan, left = [], total_bits
    while left > 0:
        b = min(width, left)
        left -= b
        plan.append((left, b))
    return plan


def _histogram(flats, groups, num, nbins, bin_of):
    """Scatter-add histogram ``(num, nbins)`` of ``bin_of(leaf, chunk, positions)``.

    ``bin_of`` returns each element's bin in ``[0, nbins)`` or ``-1`` (not counted);
    leaf ``i`` counts into group ``groups[i]``. Leaves larger than one chunk are
    walked chunk by chunk in a ``fori_loop`` (the last chunk is clamped to the
    leaf's end and its overlap masked), so the temporary memory is a few chunks,
    not a few copies of the model.
    """
    hist = jnp.zeros((num * nbins + 1,), jnp.int32)
    dummy = num * nbins

    def add(h, i, x, pos, valid):
        b = bin_of(i, x, pos)
        idx = jnp.where(valid & (b >= 0), groups[i] * nbins + b, dummy)
        return h.at[idx].add(1, mode="promise_in_bounds")

    for i, x in enumerate(flats):
        size = x.shape[0]
        if size <= _CHUNK:
            hist = add(hist, i, x, jnp.arange(size, dtype=jnp.uint32), True)
            continue

        def body(j, h, i=i, x=x, size=size):
            begin = j * _CHUNK
            start = jnp.minimum(begin, size - _CHUNK)
            pos = start.astype(jnp.uint32) + jnp.arange(_CHUNK, dtype=jnp.uint32)
            valid = pos >= begin.astype(jnp.uint32)
            return add(h, i, lax.dynamic_slice(x, (start,), (_CHUNK,)), pos, valid)

        hist = lax.fori_loop(0, -(-size // _CHUNK), body, hist)
    return hist[:-1].reshape(num, nbins)


def _radix_select(flats, value_of, groups, num, rank, total_bits):
    """Per group, the ``rank``-th smallest (1-based) eligible value, by radix histograms.

    ``value_of(leaf, chunk, positions)`` gives each element's ``uint32`` value and
    whether it takes part. One histogram per digit narrows the prefix; returns
    the value ``t``, the rank left inside the final bucket (how many of the
    elements equal to ``t`` are still to be taken) and how many equal ``t``.
    """
    prefix = jnp.zeros((num,), jnp.uint32)
    left = rank
    equal = jnp.zeros((num,), jnp.int32)
    for shift, bits in _digit_plan(total_bits, num):
        nbins = 1 << bits
        top = shift + bits

        def bin_of(i, x, pos, shift=shift, nbins=nbins, top=top, prefix=prefix):
            v, ok = value_of(i, x, pos)
            if top < 32:
                ok = ok & ((v >> top) == (prefix[groups[i]] >> top))
            digit = ((v >> shift) & jnp.uint32(nbins - 1)).astype(jnp.int32)
            return jnp.where(ok, digit, -1)

        hist = _histogram(flats, groups, num, nbins, bin_of)
        cum = jnp.cumsum(hist, axis=1)
        d = jnp.minimum(jnp.sum(cum < left[:, None], axis=1), nbins - 1)
        below = jnp.where(d > 0, jnp.take_along_axis(cum, jnp.maximum(d - 1, 0)[:, None],
                                                     axis=1)[:, 0], 0)
        left = left - below
        prefix = prefix | (d.astype(jnp.uint32) << shift)
        equal = jnp.take_along_axis(hist, d[:, None], axis=1)[:, 0]
    return prefix, left, equal


@functools.partial(jax.jit, static_argnums=(2, 3))
def _select(arrays, z, groups, keys):
    # jitted once per shape signature, so eager callers do not recompile
    num = max(groups) + 1
    sizes = [0] * num
    offsets = []
    for a, g in zip(arrays, groups, strict=True):
        offsets.append(sizes[g])
        sizes[g] += int(a.size)
    n = jnp.asarray(sizes, jnp.int32)
    z = jnp.clip(jnp.broadcast_to(z, (num,)), 0, n)
    flats = [jnp.reshape(a, (-1,)) for a in arrays]

    def key_of(x):
        return x if keys else order_keys(x)

    # the z-th smallest key t of each group; `need` of the keys equal to t are taken
    t, need, ties = _radix_select(flats, lambda i, x, pos: (key_of(x), True), groups, num,
                                  z, 32)
    simple = (need >= ties) | (need <= 0)
    simple_cut = jnp.where(need <= 0, 0, max(sizes))

    def split_ties(_):
        # the need-th smallest group index among the keys equal to t: take indices up to it
        def value_of(i, x, pos):
            return pos + jnp.uint32(offsets[i]), key_of(x) == t[groups[i]]

        last, _, _ = _radix_select(flats, value_of, groups, num, jnp.maximum(need, 1),
                                   max(1, int(max(sizes) - 1).bit_length()))
        return jnp.where(simple, simple_cut, last.astype(jnp.int32) + 1)

    cut = lax.cond(jnp.all(simple), lambda _: simple_cut, split_ties, None).astype(jnp.uint32)

    def mask(a, g, o):
        k = key_of(a)
        index = jnp.reshape(jnp.arange(a.size, dtype=jnp.uint32), a.shape)
        return (k < t[g]) | ((k == t[g]) & (index + jnp.uint32(o) < cut[g]))

    return [mask(a, g, o) for a, g, o in zip(arrays, groups, offsets, strict=True)]


def count_for(sparsity, n: int) -> jax.Array:
    """``round(sparsity * n)`` as int32 (``sparsity`` may be traced; float32 arithmetic)."""
    s = jnp.asarray(sparsity, jnp.float32)
    return jnp.clip(jnp.round(s * jnp.float32(n)), 0, n).astype(jnp.int32)
