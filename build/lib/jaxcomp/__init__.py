"""jaxcomp: neural-network compression for JAX.

Pruning, quantization, knowledge distillation and tensor decomposition as
pure, jit-compiled transforms over Flax parameter pytrees.

Example:
    >>> import jax.numpy as jnp
    >>> import jaxcomp as jc
    >>> t = jc.identity()
    >>> params = {"Dense_0": {"kernel": jnp.ones((3, 2))}}
    >>> jc.selected_paths(params)
    ['Dense_0/kernel']
"""

from jaxcomp.core import (
    ConfigError,
    Transform,
    chain,
    identity,
    named_chain,
    paths,
    resolve_rules,
    schedules,
    select,
    selected_paths,
    stateless,
)

__version__ = "0.1.0"

_SUBPACKAGES = ("data", "decompose", "distill", "distributed", "experiment", "flax", "models",
                "prune", "quant", "sweep", "train")


def __getattr__(name: str):
    """Import subpackages on first use: ``jc.prune.magnitude(...)`` works after
    ``import jaxcomp as jc`` without paying for every family at import time."""
    if name in _SUBPACKAGES:
        import importlib

        return importlib.import_module(f"jaxcomp.{name}")
    raise AttributeError(f"module 'jaxcomp' has no attribute {name!r}")

__all__ = [
    "ConfigError", "Transform", "__version__", "chain", "identity", "named_chain", "paths",
    "resolve_rules", "schedules", "select", "selected_paths", "stateless",
]
