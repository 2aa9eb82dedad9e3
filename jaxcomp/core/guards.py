"""Guards every transform runs at its entry points: the right state, the same params.

A transform's ``apply``/``update`` must get the state its own ``init`` returned and
params with the leaves (and shapes) ``init`` saw. Without these checks a wrong state
fails deep inside with ``KeyError: 'masks'``, a leaf missing from the params silently
loses its mask, and a transposed kernel meets a JAX broadcasting error. The checks
read only static structure (paths, shapes), so they cost nothing under ``jit``.

Example:
    >>> import jax.numpy as jnp
    >>> from jaxcomp.core.guards import require_state
    >>> try:
    ...     require_state("prune.apply", {"bits": {}}, ("masks",), "a pruner's")
    ... except ValueError as e:
    ...     print(str(e)[:75])
    prune.apply: the state has no 'masks' entry (it looks like weight_quant's s
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from jaxcomp.core import paths as _paths
from jaxcomp.core.errors import ConfigError, _is_tracer

# which transform a state's top-level keys betray (for error messages only)
_SIGNATURES: tuple[tuple[frozenset[str], str], ...] = (
    (frozenset({"masks", "gate", "schedule"}), "a pruner (jaxcomp.prune.pruner)"),
    (frozenset({"masks", "drop"}), "a dynamic sparse pruner (jaxcomp.prune.rigl/set_)"),
    (frozenset({"masks", "sparsity"}), "a channel pruner"),
    (frozenset({"bits"}), "weight_quant"),
)


def describe_state(state: Any) -> str:
    """A guess at which transform made ``state`` ("weight_quant's state", ...)."""
    if isinstance(state, tuple | list):
        return f"a {type(state).__name__} of {len(state)} states (a jc.chain state?)"
    if isinstance(state, Mapping):
        keys = set(map(str, state))
        for sig, name in _SIGNATURES:
            if sig <= keys:
                return f"{name}'s state"
        return f"a state with keys {sorted(keys)[:6]}"
    return f"a {type(state).__name__}"


def require_state(what: str, state: Any, keys: Sequence[str], owner: str) -> Mapping:
    """ConfigError unless ``state`` is a mapping holding every key in ``keys``.

    Args:
      what: the entry point, e.g. ``"prune.apply"``.
      state: what the caller passed.
      keys: the top-level keys this transform's ``init`` puts in its state.
      owner: whose state is expected, e.g. ``"a pruner's"``.
    """
    if not isinstance(state, Mapping):
        raise ConfigError(f"{what}: got {describe_state(state)} as state; expected {owner} "
                          f"state (a dict with {list(keys)}) as returned by its init")
    for k in keys:
        if k not in state:
            raise ConfigError(f"{what}: the state has no {k!r} entry (it looks like "
                              f"{describe_state(state)}); expected {owner} state, as "
                              f"returned by this transform's init")
    return state


def require_leaves(what: str, params: Any) -> list[tuple[str, Any]]:
    """ConfigError if ``params`` has no array leaves (``{}``, ``None``, an empty list)."""
    flat = _paths.flatten(params)
    if not flat:
        raise ConfigError(f"{what}: params is empty (got {type(params).__name__} "
                          f"{params!r:.40}); expected a pytree of arrays such as "
                          "variables['params']")
    return flat


def check_same_leaves(what: str, params: Any, expected: Mapping[str, Sequence[int] | None],
                      *, owner: str = "init") -> dict[str, Any]:
    """ConfigError unless every path of ``expected`` is a leaf of ``params`` with that shape.

    Args:
      what: the entry point, e.g. ``"prune.apply"``.
      params: the params given now.
      expected: ``{path: shape at init}`` (``None``: only the path is checked).
      owner: what recorded the shapes (named in the message).

    Returns:
      ``{path: leaf}`` of ``params``.
    """
    pd = _paths.path_dict(params)
    missing = [p for p in expected if p not in pd]
    if missing:
        raise ConfigError(f"{what}: params lack {missing[:5]} (the state was built by {owner} "
                          f"for these paths); params have {list(pd)[:8]}. Pass the params "
                          f"the state was made for, or re-run init after surgery")
    for p, shape in expected.items():
        if shape is None:
            continue
        now = tuple(np.shape(pd[p]))
        if now != tuple(shape):
            raise ConfigError(f"{what}: {p!r} has shape {now} but had shape {tuple(shape)} at "
                              f"{owner}; the params changed since (surgery, a transpose?): "
                              f"re-run init")
    return pd


def check_finite_leaves(what: str, leaves: Iterable[tuple[str, Any]]) -> None:
    """ConfigError naming the first leaf with NaN/inf values (traced leaves pass)."""
    for p, x in leaves:
        if _is_tracer(x):
            continue
        a = np.asarray(x)
        if a.size and np.issubdtype(a.dtype, np.floating):
            bad = int(a.size - np.count_nonzero(np.isfinite(a)))
            if bad:
                raise ConfigError(f"{what}: {p!r} has {bad} NaN/inf value(s) among {a.size}; "
                                  "expected finite weights (did training diverge?)")
