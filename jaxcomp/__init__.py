"""jaxcomp: neural-network compression for JAX.

Pruning, quantization, knowledge distillation and tensor decomposition as
pure, jit-compiled transforms over Flax parameter pytrees.

Everything but :class:`ConfigError` and ``__version__`` is imported on first
use, so ``import jaxcomp`` (and the ``jaxcomp`` command's start-up) does not
import JAX.

Example:
    >>> import jax.numpy as jnp
    >>> import jaxcomp as jc
    >>> t = jc.identity()
    >>> params = {"Dense_0": {"kernel": jnp.ones((3, 2))}}
    >>> jc.selected_paths(params)
    ['Dense_0/kernel']
"""

from __future__ import annotations

import importlib
from typing import Any

from jaxcomp.core.errors import ConfigError

__version__ = "0.1.0"

_CORE = ("Transform", "chain", "identity", "named_chain", "paths", "resolve_rules", "schedules",
         "select", "selected_paths", "stateless")
_SUBPACKAGES = ("commands", "core", "data", "decompose", "distill", "distributed", "experiment",
                "flax", "lora", "models", "prune", "quant", "sweep", "train")


def __getattr__(name: str) -> Any:
    """Import on first use: ``jc.chain`` loads ``jaxcomp.core``'s transforms,
    ``jc.prune.magnitude(...)`` the pruning family, without paying for every
    family (or JAX) at import time."""
    if name in _CORE:
        value = getattr(importlib.import_module("jaxcomp.core"), name)
        globals()[name] = value
        return value
    if name in _SUBPACKAGES:
        return importlib.import_module(f"jaxcomp.{name}")
    raise AttributeError(f"module 'jaxcomp' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_CORE) | set(_SUBPACKAGES))


__all__ = [
    "ConfigError", "Transform", "__version__", "chain", "identity", "named_chain", "paths",
    "resolve_rules", "schedules", "select", "selected_paths", "stateless",
]
