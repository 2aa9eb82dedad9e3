"""Experiments: configs, the family registry, one run from a config.

``base_config`` / ``load_config`` / ``apply_overrides`` do not import JAX (config
files import this package); the run machinery is imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from jaxcomp.experiment.config import apply_overrides, base_config, load_config

_RUN = ("RunContext", "make_optimizer", "run_experiment")


def __getattr__(name: str) -> Any:
    if name in _RUN:
        return getattr(importlib.import_module("jaxcomp.experiment.run"), name)
    raise AttributeError(f"module 'jaxcomp.experiment' has no attribute {name!r}")


__all__ = ["RunContext", "apply_overrides", "base_config", "load_config", "make_optimizer",
           "run_experiment"]
