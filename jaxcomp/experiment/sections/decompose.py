"""The ``decompose`` config section: defaults, allowed values, ``validate`` (no JAX).

Example:
    >>> default_config().method, METHODS
    ('none', ('none', 'svd', 'tucker2', 'cp'))
"""

from __future__ import annotations

import ml_collections

from jaxcomp.core.errors import check_choice, check_range

#: ``jaxcomp.decompose._checks.METHODS`` and ``jaxcomp.decompose.plan.SELECTIONS``
#: (tests keep them equal).
DECOMPOSITIONS = ("svd", "tucker2", "cp")
METHODS = ("none", *DECOMPOSITIONS)
SELECTIONS = ("fixed", "energy", "vbmf", "budget")
VECTOR_KEYS: tuple[str, ...] = ()


def default_config() -> ml_collections.ConfigDict:
    """The family's defaults (``method="none"``: off)."""
    return ml_collections.ConfigDict({
        "method": "none", "rank": 0, "selection": "energy", "energy": 0.9, "budget": 0.25,
        "where": (), "n_iter": 0, "finetune_epochs": 1, "finetune_lr": 0.0,
        "measure_batch": 256, "choose_by_speed": False, "seed": 0,
    })


def validate(cfg: ml_collections.ConfigDict) -> None:
    """Check every key of ``cfg.decompose`` (ConfigError names the key)."""
    check_choice("decompose.method", cfg.method, METHODS)
    check_choice("decompose.selection", "fixed" if cfg.rank else cfg.selection, SELECTIONS)
    check_range("decompose.rank", cfg.rank, 0, None)
    check_range("decompose.energy", cfg.energy, 0.0, 1.0, lo_open=True)
    check_range("decompose.budget", cfg.budget, 0.0, 1.0, lo_open=True)
    check_range("decompose.n_iter", cfg.n_iter, 0, None)
    check_range("decompose.finetune_epochs", cfg.finetune_epochs, 0, None)
    check_range("decompose.finetune_lr", cfg.finetune_lr, 0.0, None)
    check_range("decompose.measure_batch", cfg.measure_batch, 0, None)
