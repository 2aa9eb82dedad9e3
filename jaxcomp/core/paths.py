"""Readable path strings for any pytree: linen params, NNX ``State``, plain dicts.

Paths join dict keys, attribute names and sequence indices with ``/``:
``Dense_0/kernel`` for linen, ``l1/kernel`` for an NNX ``State`` (the trailing
``value`` attribute of NNX variables is dropped), ``layers/0/kernel`` for lists.

Example:
    >>> import jax.numpy as jnp
    >>> from jaxcomp.core import paths
    >>> tree = {"Dense_0": {"kernel": jnp.ones((2, 3)), "bias": jnp.zeros(3)}}
    >>> [p for p, _ in paths.flatten(tree)]
    ['Dense_0/bias', 'Dense_0/kernel']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax

PyTree = Any


def key_to_str(key: Any) -> str:
    """One path element as text."""
    if isinstance(key, jax.tree_util.DictKey):
        return str(key.key)
    if isinstance(key, jax.tree_util.GetAttrKey):
        return str(key.name)
    if isinstance(key, jax.tree_util.SequenceKey):
        return str(key.idx)
    if isinstance(key, jax.tree_util.FlattenedIndexKey):
        return str(key.key)
    return str(key)


def path_to_str(path: tuple) -> str:
    """A key path from ``jax.tree_util`` as ``a/b/c`` (NNX's trailing ``value`` dropped)."""
    parts = [key_to_str(k) for k in path]
    if len(path) > 1 and isinstance(path[-1], jax.tree_util.GetAttrKey) and parts[-1] == "value":
        parts = parts[:-1]
    return "/".join(parts)


def flatten(tree: PyTree) -> list[tuple[str, Any]]:
    """``[(path_string, leaf), ...]`` in ``jax.tree_util`` leaf order."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [(path_to_str(p), leaf) for p, leaf in leaves]


def path_dict(tree: PyTree) -> dict[str, Any]:
    """``{path_string: leaf}``; raises if two leaves share a path string."""
    out: dict[str, Any] = {}
    for p, leaf in flatten(tree):
        if p in out:
            raise ValueError(f"two leaves share the path {p!r}")
        out[p] = leaf
    return out


def all_paths(tree: PyTree) -> list[str]:
    """Every leaf's path string, in leaf order."""
    return [p for p, _ in flatten(tree)]


def map_with_path(fn: Callable[[str, Any], Any], tree: PyTree) -> PyTree:
    """``jax.tree.map`` whose function also receives the leaf's path string."""
    return jax.tree_util.tree_map_with_path(lambda p, x: fn(path_to_str(p), x), tree)


def replace(tree: PyTree, new_leaves: Mapping[str, Any]) -> PyTree:
    """A copy of ``tree`` with the leaves at the given paths replaced.

    Raises KeyError naming any path in ``new_leaves`` that is not in ``tree``.
    """
    known = set(all_paths(tree))
    missing = [p for p in new_leaves if p not in known]
    if missing:
        from jaxcomp.core.errors import PathError

        raise PathError(f"paths not in the tree: {missing}; available: {sorted(known)[:10]}")
    return map_with_path(lambda p, x: new_leaves.get(p, x), tree)


def unflatten_like(tree: PyTree, values: Mapping[str, Any]) -> PyTree:
    """Build a tree shaped like ``tree`` whose leaves come from ``values[path]``."""
    return map_with_path(lambda p, _: values[p], tree)
