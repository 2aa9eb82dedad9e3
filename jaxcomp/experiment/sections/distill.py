"""The ``distill`` config section: defaults, allowed values, ``validate`` (no JAX).

Example:
    >>> cfg = default_config()
    >>> cfg.method, cfg.temperature, cfg.alpha
    ('none', 4.0, 0.9)
"""

from __future__ import annotations

import ml_collections

from jaxcomp.core.errors import check_choice, check_range
from jaxcomp.experiment.sections import MODEL_NAMES

#: ``jaxcomp.distill.objective.METHODS`` (a test keeps them equal); ``ce`` (no
#: teacher) is not a distillation method of its own.
LOSS_METHODS = ("kd", "mse", "dkd", "dist", "rkd", "pkt", "sp", "ce")
METHODS = ("none", *[m for m in LOSS_METHODS if m != "ce"])
#: Config keys that only change arrays in ``ctx.loss_state`` (safe to vmap over).
VECTOR_KEYS: tuple[str, ...] = ("temperature", "alpha", "dkd_beta", "dist_beta", "dist_gamma",
                                "rkd_angle")


def default_config() -> ml_collections.ConfigDict:
    """Distillation off by default; Hinton-style KD numbers when switched on."""
    return ml_collections.ConfigDict({
        "method": "none",
        "temperature": 4.0,
        "alpha": 0.9,
        "dkd_beta": 8.0,
        "dist_beta": 1.0,
        "dist_gamma": 1.0,
        "rkd_angle": 2.0,
        "teacher_model": "mlp",
        "teacher_features": (1200, 1200),
        "teacher_dropout": 0.0,
        "teacher_jitter": 0,
        "teacher_epochs": 10,
        "teacher_learning_rate": 1e-3,
        "teacher_seed": 0,
        "teacher_checkpoint": "",
        "cache_teacher": True,
    })


def validate(cfg: ml_collections.ConfigDict) -> None:
    """Check every key of ``cfg.distill`` (ConfigError names the key)."""
    check_choice("distill.method", cfg.method, METHODS)
    check_choice("distill.teacher_model", cfg.teacher_model, MODEL_NAMES)
    check_range("distill.teacher_epochs", cfg.teacher_epochs, 0, None)
    check_range("distill.teacher_learning_rate", cfg.teacher_learning_rate, 0.0, None,
                lo_open=True)
    check_range("distill.teacher_dropout", cfg.teacher_dropout, 0.0, 1.0, hi_open=True)
    check_range("distill.teacher_jitter", cfg.teacher_jitter, 0, None)
    for k in VECTOR_KEYS:  # loss_state re-checks, but name the config key here
        if k == "temperature":
            check_range("distill.temperature", cfg[k], 0.0, None, lo_open=True)
        elif k == "alpha":
            check_range("distill.alpha", cfg[k], 0.0, 1.0)
        else:
            check_range(f"distill.{k}", cfg[k], 0.0, None)
