"""The one selection argument, ``where=``, shared by every transform.

``where`` may be:

* ``None`` — the default: every floating-point leaf with ``ndim >= 2``
  (kernels, not biases or norm scales);
* a regex string, or an ordered sequence of rules. A rule is a pattern string
  (select), a pattern prefixed with ``!`` (exclude), or a ``(pattern, value)``
  pair. Each leaf takes the value of the **first** rule whose pattern
  *fully* matches its path; leaves no rule matches are not selected;
* a predicate ``(path, leaf) -> bool``;
* a pytree of bools with the same structure as the params.

A rule that matches no path is an error that names the rule and lists the
nearest paths, never a silent no-op.

Example:
    >>> import jax.numpy as jnp
    >>> from jaxcomp.core.select import selected_paths
    >>> params = {"Dense_0": {"kernel": jnp.ones((4, 3)), "bias": jnp.zeros(3)},
    ...           "Dense_1": {"kernel": jnp.ones((3, 2)), "bias": jnp.zeros(2)}}
    >>> selected_paths(params, ["!Dense_1/.*", ".*/kernel"])
    ['Dense_0/kernel']
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcomp.core import paths as _paths
from jaxcomp.core.errors import ConfigError, nearest

Where = None | str | Sequence[Any] | Callable[[str, Any], bool] | Any


def default_predicate(path: str, leaf: Any) -> bool:
    """Floating leaves with at least two dimensions (weight matrices and kernels)."""
    shape = getattr(leaf, "shape", ())
    dtype = getattr(leaf, "dtype", None)
    return len(shape) >= 2 and dtype is not None and jnp.issubdtype(dtype, jnp.floating)


def _normalize_rules(rules: str | Sequence[Any], what: str = "where"
                     ) -> list[tuple[str, Any]]:
    if isinstance(rules, str):
        rules = [rules]
    out: list[tuple[str, Any]] = []
    for rule in rules:
        if isinstance(rule, str):
            out.append((rule[1:], False) if rule.startswith("!") else (rule, True))
        elif isinstance(rule, tuple | list) and len(rule) == 2 and isinstance(rule[0], str):
            out.append((rule[0], rule[1]))
        else:
            raise ConfigError(
                f"{what}: rule {rule!r} is not a pattern string, '!pattern' or (pattern, value)"
            )
    for pattern, _ in out:
        try:
            re.compile(pattern)
        except re.error as e:
            raise ConfigError(f"{what}: rule {pattern!r} is not a valid regex: {e}") from None
    return out


def resolve_rules(
    tree: Any,
    rules: str | Sequence[Any],
    *,
    default: Any = None,
    what: str = "where",
) -> dict[str, Any]:
    """Map each leaf path to the value of the first rule that fully matches it.

    Args:
      tree: any pytree (linen params, NNX State, dict of arrays).
      rules: ordered rules (see module docstring).
      default: value for paths that no rule matches.
      what: the argument's name, used in error messages.

    Returns:
      ``{path: value}`` for every leaf, in leaf order.

    Raises:
      ConfigError: a rule matches no path (its nearest paths are listed).
    """
    norm = _normalize_rules(rules, what)
    all_p = _paths.all_paths(tree)
    compiled = [(re.compile(p), p, v) for p, v in norm]
    used = [False] * len(compiled)
    out: dict[str, Any] = {}
    for path in all_p:
        value = default
        for i, (rx, _, v) in enumerate(compiled):
            if rx.fullmatch(path):
                used[i] = True
                value = v
                break
        out[path] = value
    # A rule shadowed by an earlier one still "matches"; report only rules that fit no path.
    for i, (rx, pattern, _) in enumerate(compiled):
        if not used[i] and not any(rx.fullmatch(p) for p in all_p):
            near = nearest(pattern, all_p, n=5)
            raise ConfigError(
                f"{what}: rule {pattern!r} matches no parameter path; nearest paths: {near}"
            )
    return out


def select(tree: Any, where: Where = None) -> dict[str, bool]:
    """``{path: selected}`` for every leaf of ``tree`` (concrete Python bools).

    Raises:
      ConfigError: a rule that matches nothing, a bool tree of the wrong
        structure, or a selection that selects no leaf at all.
    """
    flat = _paths.flatten(tree)
    if where is None:
        sel = {p: bool(default_predicate(p, x)) for p, x in flat}
    elif isinstance(where, str) or (
        isinstance(where, Sequence) and not isinstance(where, Mapping)
    ):
        sel = {p: bool(v) for p, v in resolve_rules(tree, where, default=False).items()}
    elif callable(where):
        sel = {p: bool(where(p, x)) for p, x in flat}
    else:
        try:
            bools = _paths.flatten(where)
        except Exception as e:  # pragma: no cover - defensive
            raise ConfigError(f"where: cannot read {type(where).__name__} as a bool tree") from e
        if [p for p, _ in bools] != [p for p, _ in flat]:
            raise ConfigError(
                "where: the bool tree's paths differ from the params' paths: "
                f"{[p for p, _ in bools][:5]} vs {[p for p, _ in flat][:5]}"
            )
        sel = {p: bool(np.asarray(b)) for p, b in bools}
    if flat and not any(sel.values()):
        raise ConfigError(
            f"where: selects no parameter; available paths: {[p for p, _ in flat][:10]}"
        )
    return sel


def selected_paths(tree: Any, where: Where = None) -> list[str]:
    """The paths selected by ``where``, in leaf order."""
    return [p for p, s in select(tree, where).items() if s]


def is_array(x: Any) -> bool:
    """True for JAX/numpy arrays and tracers."""
    return isinstance(x, jax.Array | np.ndarray) or hasattr(x, "shape")
