"""Lottery tickets (Frankle & Carbin 2019): iterative magnitude pruning with rewinding,
and the random-reinitialization and random-mask controls.

One IMP round prunes a fixed fraction of each layer's *surviving* weights by
magnitude (20% per round, 10% for the output layer in the paper), then resets
the survivors to their initial values — or to an early checkpoint's values
("late rewinding", Frankle et al. 2020) — and retrains with the mask fixed.
Masks are ``{path: bool}`` dicts (``True`` = keep) as in
:mod:`jaxcomp.prune.masks`; counts are exact.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp.prune import lottery
    >>> params = {"Dense_0": {"kernel": jnp.arange(1., 11.).reshape(5, 2)},
    ...           "Dense_1": {"kernel": jnp.arange(1., 11.).reshape(2, 5)}}
    >>> rates = lottery.lottery_rates(params, rate=0.2, output_rate=0.1)
    >>> rates
    {'Dense_0/kernel': 0.2, 'Dense_1/kernel': 0.1}
    >>> masks = lottery.prune_round(params, lottery.full_masks(params, rates), rates)
    >>> [int(m.sum()) for m in masks.values()], round(lottery.remaining(masks), 2)
    ([8, 9], 0.85)

References:
    Frankle & Carbin, "The Lottery Ticket Hypothesis: Finding Sparse, Trainable
    Neural Networks", ICLR 2019.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcomp.core import paths as _paths
from jaxcomp.core.errors import ConfigError, check_range
from jaxcomp.core.select import selected_paths
from jaxcomp.core.transform import Transform
from jaxcomp.prune.masks import apply_masks, check_masks, keep_largest

Masks = dict[str, jax.Array]


def lottery_rates(params: Any, rate: float = 0.2, output_rate: float | None = 0.1, *,
                  where: Any = None) -> dict[str, float]:
    """Per-round pruning rate of each selected leaf; the last selected leaf (the
    output layer) gets ``output_rate`` (``None``: the same ``rate``)."""
    check_range("lottery.rate", rate, 0.0, 1.0, hi_open=True)
    paths = selected_paths(params, where)
    out = {p: float(rate) for p in paths}
    if output_rate is not None:
        check_range("lottery.output_rate", output_rate, 0.0, 1.0, hi_open=True)
        out[paths[-1]] = float(output_rate)
    return out


def full_masks(params: Any, rates_or_paths: Mapping[str, Any] | list[str]) -> Masks:
    """All-``True`` masks for the given paths."""
    leaves = _paths.path_dict(params)
    return {p: jnp.ones(np.shape(leaves[p]), bool) for p in rates_or_paths}


def prune_round(params: Any, masks: Masks, rates: Mapping[str, float]) -> Masks:
    """Prune ``rates[path]`` of each leaf's surviving weights by ``|w|`` (exact count:
    ``round(alive * (1 - rate))`` survive)."""
    leaves = _paths.path_dict(params)
    check_masks(leaves, masks)
    out = {}
    for p, m in masks.items():
        rate = rates.get(p, 0.0)
        check_range(f"lottery.rates[{p!r}]", rate, 0.0, 1.0, hi_open=True)
        alive = int(np.sum(np.asarray(m)))
        k = int(round(alive * (1.0 - rate)))
        score = jnp.where(m, jnp.abs(leaves[p]).astype(jnp.float32), -1.0)
        (keep,) = keep_largest([score], k)
        out[p] = keep
    return out


def random_masks(key: jax.Array, masks: Masks) -> Masks:
    """Random masks with exactly the same number of survivors in each leaf (control)."""
    keys = jax.random.split(key, len(masks))
    out = {}
    for k, (p, m) in zip(keys, masks.items(), strict=True):
        (keep,) = keep_largest([jax.random.uniform(k, np.shape(m))], int(np.sum(np.asarray(m))))
        out[p] = keep
    return out


def rewind(params: Any, masks: Masks) -> Any:
    """Reset to ``params`` (the initial or an early checkpoint's weights) under ``masks``."""
    return apply_masks(params, masks)


def remaining(masks: Masks) -> float:
    """Fraction of the masked weights that survive."""
    n = sum(int(np.size(m)) for m in masks.values())
    return float(sum(int(np.sum(np.asarray(m))) for m in masks.values()) / max(n, 1))


def mask_transform(masks: Masks) -> Transform:
    """A fixed-mask :class:`Transform`: ``apply`` zeroes the pruned weights (so their
    gradients are zero too); the masks live in the state as float arrays."""
    def init(params):
        check_masks(_paths.path_dict(params), masks)
        return {p: jnp.asarray(m, jnp.float32) for p, m in masks.items()}

    def apply(params, state):
        return _paths.map_with_path(
            lambda p, x: x * state[p].astype(x.dtype) if p in state else x, params)

    def update(params, state, *, step, grads=None, key=None):
        del params, step, grads, key
        return state

    return Transform(init, apply, update)


@dataclasses.dataclass
class Round:
    """One IMP round: the masks it trained with, their density, and what ``train`` returned."""

    round: int
    remaining: float
    masks: Masks
    params: Any
    metrics: dict[str, float]


TrainFn = Callable[[Any, Masks], tuple[Any, dict[str, float]]]


def iterative_magnitude_pruning(train: TrainFn, init_params: Any, *, rounds: int,
                                rate: float = 0.2, output_rate: float | None = 0.1,
                                where: Any = None, rewind_params: Any = None,
                                on_round: Callable[[Round], None] | None = None
                                ) -> list[Round]:
    """Find a lottery ticket by ``rounds`` rounds of prune → rewind → retrain.

    Args:
      train: ``(start_params, masks) -> (trained_params, metrics)``; it must keep
        the masked weights at zero (e.g. train with :func:`mask_transform`).
      init_params: the dense network's initial weights (round 0 trains from them).
      rounds: number of pruning rounds after the dense round.
      rate, output_rate, where: see :func:`lottery_rates`.
      rewind_params: reset survivors to these weights instead of ``init_params``
        (an early-training checkpoint: "late rewinding").
      on_round: called after each round.

    Returns:
      ``rounds + 1`` :class:`Round` records (round 0 is dense).
    """
    if not isinstance(rounds, int) or rounds < 0:
        raise ConfigError(f"lottery.rounds: got {rounds!r}; expected an integer >= 0")
    rates = lottery_rates(init_params, rate, output_rate, where=where)
    reset = init_params if rewind_params is None else rewind_params
    masks = full_masks(init_params, rates)
    history = []
    start = init_params
    for r in range(rounds + 1):
        if r > 0:
            masks = prune_round(history[-1].params, masks, rates)
            start = rewind(reset, masks)
        trained, metrics = train(start, masks)
        rec = Round(r, remaining(masks), masks, trained, dict(metrics))
        history.append(rec)
        if on_round is not None:
            on_round(rec)
    return history


__all__ = ["Round", "full_masks", "iterative_magnitude_pruning", "lottery_rates",
           "mask_transform", "prune_round", "random_masks", "remaining", "rewind"]
