"""A global parameter (or FLOP) budget distributed across layers.

Each layer offers a ladder of candidate ranks with a cost (weights or FLOPs of
its factorized form) and a distortion (the squared spectral energy it drops).
Starting from every layer's cheapest candidate, the allocator greedily takes
the step with the largest drop in distortion per unit of extra cost until the
budget is spent. A budget below the sum of the cheapest candidates is a
:class:`~jaxcomp.core.errors.ConfigError` naming the minimum.

Example:
    >>> import numpy as np
    >>> from jaxcomp.decompose.budget import svd_candidates, allocate
    >>> c = {"a/kernel": svd_candidates(np.array([5.0, 1.0]), (2, 2)),
    ...      "b/kernel": svd_candidates(np.array([3.0, 2.0]), (2, 2))}
    >>> allocate(c, budget=12)      # rank 1 costs 4 weights; one more step fits
    {'a/kernel': 1, 'b/kernel': 2}
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from jaxcomp.core.errors import ConfigError, check_number
from jaxcomp.decompose.rank import mode_spectrum
from jaxcomp.decompose.svd import svd_params
from jaxcomp.decompose.tucker import tucker2_params


class Candidates(NamedTuple):
    """Parallel lists: ``ranks[i]`` costs ``costs[i]`` and leaves ``distortion[i]``."""

    ranks: list[Any]
    costs: list[float]
    distortion: list[float]


def svd_candidates(s: np.ndarray, shape: Sequence[int], *, flops_per_weight: float = 1.0,
                   ) -> Candidates:
    """Ranks ``1..min(shape)`` of an SVD; distortion = dropped ``sum(s[r:]**2)``.

    ``flops_per_weight`` turns weights into FLOPs (e.g. ``2 * positions``).
    """
    s2 = np.asarray(s, np.float64) ** 2
    ranks = list(range(1, min(shape) + 1))
    return Candidates(ranks, [flops_per_weight * svd_params(tuple(shape), r) for r in ranks],
                      [float(s2[r:].sum()) for r in ranks])


def tucker2_candidates(kernel: np.ndarray, *, steps: int = 16,
                       flops_per_weight: float = 1.0) -> Candidates:
    """Tucker-2 rank pairs on a common fraction ``t`` of both channel counts;
    distortion = dropped energy of both unfoldings (an upper bound on the HOSVD error)."""
    shape = np.shape(kernel)
    s_in, s_out = (np.asarray(mode_spectrum(kernel, m)) ** 2 for m in (2, 3))
    pairs = sorted({(max(1, round(t * shape[2])), max(1, round(t * shape[3])))
                    for t in np.linspace(0, 1, steps + 1)[1:]} | {(1, 1)})
    return Candidates(pairs, [flops_per_weight * tucker2_params(shape, p) for p in pairs],
                      [float(s_in[a:].sum() + s_out[b:].sum()) for a, b in pairs])


def allocate(candidates: Mapping[str, Candidates], budget: float) -> dict[str, Any]:
    """Pick one rank per layer so that the total cost stays within ``budget``.

    Raises:
      ConfigError: ``budget`` is below the cheapest choice (the message names it).
    """
    choice = {p: int(np.argmin(c.costs)) for p, c in candidates.items()}
    minimum = sum(candidates[p].costs[i] for p, i in choice.items())
    check_number("decompose.budget", budget, 0.0, None, lo_open=True)
    if budget < minimum:
        cheapest = {p: candidates[p].ranks[i] for p, i in choice.items()}
        raise ConfigError(f"decompose.budget: got {budget:g}; the minimum for layers "
                          f"{sorted(candidates)} at ranks {cheapest} is {minimum:g}")
    spent = minimum
    for _ in itertools.count():
        best, best_gain = None, 0.0
        for p, c in candidates.items():
            i = choice[p]
            for j in range(len(c.ranks)):
                extra = c.costs[j] - c.costs[i]
                gain = c.distortion[i] - c.distortion[j]
                if extra <= 0 or gain <= 0 or spent + extra > budget:
                    continue
                if gain / extra > best_gain:
                    best, best_gain = (p, j, extra), gain / extra
        if best is None:
            break
        p, j, extra = best
        choice[p], spent = j, spent + extra
    return {p: candidates[p].ranks[i] for p, i in choice.items()}
