"""Argument and state checks of the pruning transforms (kept apart from :mod:`pruner`).

Example:
    >>> from jaxcomp.prune._args import check_args
    >>> check_args(2, 4, -1, (4, 4), "mean", None, None, True, 0.9, 1.0)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp

from jaxcomp.core import guards
from jaxcomp.core.errors import ConfigError, check_bool, check_choice, check_number


def check_args(n, m, axis, block, block_reduce, normalize, gate, monotone, ema_decay,
                erk_power) -> None:
    """The pruner's static arguments, checked where the pruner is made."""
    for name, v in (("n", n), ("m", m)):
        check_number(f"prune.{name} (N:M)", v, 1, None, integer=True)
    check_number("prune.axis", axis, integer=True)
    if isinstance(block, str) or not isinstance(block, Sequence) or not block or \
            any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in block):
        raise ConfigError(f"prune.block: got {block!r}; expected a tuple of block sizes >= 1")
    check_choice("prune.block_reduce", block_reduce, ("mean", "sum", "max", "l2"))
    check_choice("prune.normalize", normalize, (None, "none", "l1", "l2", "max", "mean"))
    if gate is not None:
        if isinstance(gate, str) or not isinstance(gate, Sequence) or len(gate) != 3:
            raise ConfigError(f"prune.gate: got {gate!r}; expected (begin, end, every)")
        for name, v in zip(("begin", "end", "every"), gate, strict=True):
            check_number(f"prune.gate {name}", v, 1 if name == "every" else None, None,
                         integer=True)
    check_bool("prune.monotone", monotone)
    check_number("prune.ema_decay", ema_decay, 0.0, 1.0, hi_open=True)
    check_number("prune.erk_power", erk_power, 0.0, None)


def check_pruner_state(what: str, params: Any, state: Any,
                       keys: Sequence[str] = ("masks",)) -> None:
    """ConfigError unless ``state`` is a pruner's state whose masks fit ``params``
    (every masked path present, with the mask's shape). Static: free under ``jit``."""
    guards.require_state(what, state, keys, "a pruner's")
    masks = state["masks"]
    if not isinstance(masks, Mapping):
        raise ConfigError(f"{what}: state['masks'] is a {type(masks).__name__}; expected "
                          "{path: bool array} as made by the pruner's init")
    guards.check_same_leaves(what, params, {p: jnp.shape(m) for p, m in masks.items()})


def check_traced_targets(raw: Any, weights: Mapping[str, Any]) -> None:
    """Checked-mode assertions (:mod:`jaxcomp.core.checked`) at a mask update: the sparsity
    target (``raw``: one value or ``{path: value}``) in ``[0, 1)``, the weights finite."""
    from jaxcomp.core.checked import check_traced_finite, check_traced_range

    for p, v in (raw.items() if isinstance(raw, Mapping) else [("", raw)]):
        check_traced_range(f"prune.sparsity[{p!r}]" if p else "prune.sparsity", v, 0.0, 1.0,
                           hi_open=True)
    for p, w in weights.items():
        check_traced_finite(f"prune.update: params {p!r}", w)
