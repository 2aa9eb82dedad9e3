"""The ``quant`` config section: defaults, allowed values, ``validate`` (no JAX).

Example:
    >>> cfg = default_config()
    >>> cfg.method, cfg.bits
    ('none', 8)
"""

from __future__ import annotations

from typing import Any

import ml_collections

from jaxcomp.core.errors import ConfigError, check_choice, check_range

METHODS = ("none", "ptq", "qat", "adaround")
VECTOR_KEYS: tuple[str, ...] = ("bits",)
#: ``jaxcomp.quant.uniform.SUPPORTED_BITS`` and ``jaxcomp.quant.observers.OBSERVERS``
#: (tests keep them equal).
SUPPORTED_BITS = (2, 3, 4, 5, 6, 7, 8, 16)
OBSERVERS = ("minmax", "ema", "percentile", "mse")


def default_config() -> ml_collections.ConfigDict:
    """Defaults (concrete values, so ``--set`` type checks work)."""
    return ml_collections.ConfigDict({
        "method": "none",
        "bits": 8,                # weight bits (2-8, 16)
        "act_bits": 0,            # 0: float activations
        "per_channel": True,
        "symmetric": True,        # weights; activations are asymmetric
        "observer": "minmax",     # activation calibration: minmax, ema, percentile, mse
        "weight_observer": "minmax",  # minmax or mse
        "calib_batches": 10,
        "calib_batch_size": 128,
        "where": (),              # weight rules (regex over param paths); () = all kernels
        "act_where": (),          # activation rules over module paths; () = every layer
        "keep_first_last_8bit": False,
        "fold_bn": True,
        "finetune_epochs": 0,     # QAT: extra epochs after a float training phase
        "adaround_iters": 1000,
        "adaround_reg": 0.01,
        "export": True,
    })


def check_bits_value(what: str, bits: Any) -> None:
    """A config's bit width: one of :data:`SUPPORTED_BITS` (a number, not text)."""
    if isinstance(bits, bool) or not isinstance(bits, int | float) or bits not in SUPPORTED_BITS:
        raise ConfigError(f"{what}: got {bits!r}; allowed: {SUPPORTED_BITS}")


def validate(cfg: ml_collections.ConfigDict) -> None:
    """Check every key of ``cfg.quant`` (ConfigError names the key)."""
    check_choice("quant.method", cfg.method, METHODS)
    check_bits_value("quant.bits", cfg.bits)
    if cfg.act_bits:
        check_bits_value("quant.act_bits", cfg.act_bits)
    check_choice("quant.observer", cfg.observer, OBSERVERS)
    check_choice("quant.weight_observer", cfg.weight_observer, ("minmax", "mse"))
    check_range("quant.calib_batches", cfg.calib_batches, 1, None)
    check_range("quant.calib_batch_size", cfg.calib_batch_size, 1, None)
    check_range("quant.finetune_epochs", cfg.finetune_epochs, 0, None)
    check_range("quant.adaround_iters", cfg.adaround_iters, 1, None)
    check_range("quant.adaround_reg", cfg.adaround_reg, 0.0, None)
