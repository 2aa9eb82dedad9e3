"""Exact "the z smallest scores" masks without sorting: bisection over float bit patterns.

A float32 score is mapped to a ``uint32`` key whose unsigned order is the
float order (:func:`order_keys`). The ``z``-th smallest key is found by
bisection on the key range — each step counts ``key <= mid`` over every
leaf (one fused pass), at most 32 steps, stopping early when a count is
exactly ``z``. Elements tied at the threshold are taken in index order (leaf
order, then row-major index), found by a second bisection over the index that
only runs when a tie must be split. The count of selected elements is exactly
``z`` — no full sort, jit-safe, ``z`` may be traced (so ``vmap`` over
sparsities works).

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

_SIGN = jnp.uint32(0x80000000)


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
    neg = (u & _SIGN) != 0
    return jnp.where(neg, ~u, u | _SIGN)


def _count(keys: Sequence[jax.Array], fn) -> jax.Array:
    total = jnp.zeros((), jnp.int32)
    for k in keys:
        total = total + jnp.sum(fn(k), dtype=jnp.int32)
    return total


def threshold_key(keys: Sequence[jax.Array], z: jax.Array) -> jax.Array:
    """The smallest key ``t`` with ``#(key <= t) >= z`` (a ``uint32`` scalar).

    When ``#(key <= mid) == z`` for some probe the search stops early and that
    probe is returned (then every element with ``key <= t`` is selected and no
    tie needs splitting).
    """
    z = jnp.asarray(z, jnp.int32)
    # the answer lies in [min key, max key]: a cheap reduction narrows the search
    lo = functools.reduce(jnp.minimum, [jnp.min(k) for k in keys])
    hi = functools.reduce(jnp.maximum, [jnp.max(k) for k in keys])

    def cond(c):
        lo, hi, done = c
        return (lo < hi) & ~done

    def body(c):
        lo, hi, _ = c
        mid = lo + (hi - lo) // 2
        cnt = _count(keys, lambda k: k <= mid)
        enough = cnt >= z
        return jnp.where(enough, lo, mid + 1), jnp.where(enough, mid, hi), cnt == z

    _, hi, _ = lax.while_loop(cond, body, (lo, hi, jnp.zeros((), bool)))
    return hi


def smallest_k(keys_or_scores: Sequence[jax.Array], z, *, keys: bool = False
               ) -> list[jax.Array]:
    """Bool masks marking exactly the ``z`` smallest elements over all given arrays.

    Args:
      keys_or_scores: float arrays (or ``uint32`` keys from :func:`order_keys`
        with ``keys=True``); they are ranked together, as one flat vector in
        the given order.
      z: how many to mark (an int or a traced int32 scalar), ``0 <= z <= n``.
      keys: the inputs are already ``uint32`` order keys.

    Returns:
      One bool array per input, same shapes; exactly ``z`` ``True`` in total.
      Ties are broken by position (earlier arrays, then lower row-major index, first).
    """
    ks = [k if keys else order_keys(k) for k in keys_or_scores]
    n = sum(int(k.size) for k in ks)
    z = jnp.clip(jnp.asarray(z, jnp.int32), 0, n)
    t = threshold_key(ks, z)
    c_lt = _count(ks, lambda k: k < t)
    c_eq = _count(ks, lambda k: k == t)
    need = z - c_lt
    offsets = []
    off = 0
    for k in ks:
        offsets.append(off)
        off += int(k.size)

    def split_tie(_):
        # smallest cut with #(key == t and index < cut) >= need
        def count_below(cut):
            total = jnp.zeros((), jnp.int32)
            for k, o in zip(ks, offsets, strict=True):
                idx = lax.broadcasted_iota(jnp.int32, k.shape, 0) if k.ndim == 1 else \
                    jnp.arange(k.size, dtype=jnp.int32).reshape(k.shape)
                total = total + jnp.sum((k == t) & (idx + o < cut), dtype=jnp.int32)
            return total

        def body(c):
            lo, hi = c
            mid = lo + (hi - lo) // 2
            ok = count_below(mid) >= need
            return jnp.where(ok, lo, mid + 1), jnp.where(ok, mid, hi)

        _, hi = lax.while_loop(lambda c: c[0] < c[1], body,
                               (jnp.zeros((), jnp.int32), jnp.asarray(n, jnp.int32)))
        return hi

    all_ties = need >= c_eq
    cut = lax.cond(all_ties | (need <= 0),
                   lambda _: jnp.where(need <= 0, 0, n).astype(jnp.int32), split_tie, None)
    out = []
    for k, o in zip(ks, offsets, strict=True):
        idx = jnp.arange(k.size, dtype=jnp.int32).reshape(k.shape) + o
        out.append((k < t) | ((k == t) & (idx < cut)))
    return out


def count_for(sparsity, n: int) -> jax.Array:
    """``round(sparsity * n)`` as int32 (``sparsity`` may be traced; float32 arithmetic)."""
    s = jnp.asarray(sparsity, jnp.float32)
    return jnp.clip(jnp.round(s * jnp.float32(n)), 0, n).astype(jnp.int32)
