"""The ``prune`` config section: defaults, allowed values, ``validate`` (no JAX).

Example:
    >>> cfg = default_config()
    >>> cfg.method, cfg.sparsity, cfg.allocation, cfg.schedule
    ('none', 0.9, 'layerwise', 'gradual')
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import ml_collections

from jaxcomp.core.errors import ConfigError, check_choice, check_range

#: Config keys that only change arrays in the pruner's state, the run's compression state
#: (safe to vmap over): the target sparsity and the seed of the pruner's key.
VECTOR_KEYS: tuple[str, ...] = ("sparsity", "seed")
#: The scores registered by ``jaxcomp.prune.scores`` itself (a test keeps them equal).
BUILTIN_SCORES = ("magnitude", "random", "snip", "taylor", "movement")
DYNAMIC = ("set", "rigl")


def methods() -> Sequence[str]:
    """``none``, every registered pruning score (scores a user registered count once
    ``jaxcomp.prune`` is imported), then the dynamic sparse methods."""
    scores = sys.modules.get("jaxcomp.prune.scores")
    names = tuple(scores.SCORES) if scores is not None else BUILTIN_SCORES
    return ("none", *names, *DYNAMIC)


def default_config() -> ml_collections.ConfigDict:
    """Pruning off by default; gradual magnitude pruning to 90% when switched on."""
    return ml_collections.ConfigDict({
        "method": "none",
        "sparsity": 0.9,
        "allocation": "layerwise",
        "normalize": "none",
        "structure": "unstructured",
        "n": 2,
        "m": 4,
        "axis": -1,
        "block": (4, 4),
        "schedule": "gradual",
        "begin": 0,
        "end": -1,
        "frequency": 100,
        "power": 3.0,
        "rounds": 3,
        "drop_fraction": 0.3,
        "where": (),
        "index_bits": 5,
        "seed": 0,
    })


def validate(cfg: ml_collections.ConfigDict) -> None:
    """Check every key of ``cfg.prune`` (ConfigError names the key)."""
    check_choice("prune.method", cfg.method, methods())
    check_range("prune.sparsity", cfg.sparsity, 0.0, 1.0, hi_open=True)
    check_choice("prune.allocation", cfg.allocation, ("layerwise", "global", "erk"))
    check_choice("prune.normalize", cfg.normalize, ("none", "l1", "l2", "max", "mean"))
    check_choice("prune.structure", cfg.structure, ("unstructured", "n:m", "block"))
    check_choice("prune.schedule", cfg.schedule, ("one_shot", "gradual", "iterative"))
    check_range("prune.begin", cfg.begin, 0, None)
    check_range("prune.frequency", cfg.frequency, 1, None)
    check_range("prune.rounds", cfg.rounds, 1, None)
    check_range("prune.power", cfg.power, 0.0, None, lo_open=True)
    check_range("prune.drop_fraction", cfg.drop_fraction, 0.0, 1.0)
    check_range("prune.n", cfg.n, 1, None)
    check_range("prune.m", cfg.m, 1, None)
    if cfg.n > cfg.m:
        raise ConfigError(f"prune.n: got {cfg.n}; must be <= prune.m ({cfg.m}) for n:m sparsity")
    check_range("prune.index_bits", cfg.index_bits, 1, 32)
    if cfg.end != -1 and cfg.end < cfg.begin:
        raise ConfigError(f"prune.end: got {cfg.end}; must be -1 (auto) or >= prune.begin "
                          f"({cfg.begin})")
    if cfg.method in DYNAMIC and cfg.allocation == "global":
        raise ConfigError(f"prune.allocation: got 'global' for method {cfg.method!r}; "
                          "allowed: 'layerwise', 'erk'")
