"""Reuse jitted programs across calls: a small cache keyed on the (hashable)
objects a program is built from — model, optimizer, transform, loss, mesh,
shardings — so resuming a run, or training the same model again, compiles once.

Example:
    >>> calls = []
    >>> @memo
    ... def build(a, b):
    ...     calls.append(1)
    ...     return a + b
    >>> build(1, 2), build(1, 2), len(calls)
    (3, 3, 1)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax


def _key(x: Any) -> Any:
    """Pytrees of shardings become (treedef, leaves) so they can be hashed."""
    leaves, treedef = jax.tree.flatten(x)
    return (treedef, tuple(leaves)) if treedef.num_nodes > 1 else x


def memo(builder: Callable[..., Any], maxsize: int = 16) -> Callable[..., Any]:
    """Cache ``builder(*args)`` on its arguments; unhashable arguments skip the cache."""
    cache: functools._lru_cache_wrapper = functools.lru_cache(maxsize)(
        lambda key, args: builder(*args))

    @functools.wraps(builder)
    def wrapped(*args: Any) -> Any:
        key = tuple(_key(a) for a in args)
        try:
            hash(key)
        except TypeError:
            return builder(*args)
        return cache(key, _Unhashed(args))

    wrapped.cache_info = cache.cache_info  # type: ignore[attr-defined]
    return wrapped


class _Unhashed:
    """Carries the real arguments through lru_cache without taking part in the key."""

    def __init__(self, args: tuple):
        self.args = args

    def __iter__(self):
        return iter(self.args)

    def __hash__(self) -> int:
        return 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Unhashed)


__all__ = ["memo"]
