"""Sweeps: config grids, a vectorized resumable runner, a JSONL results store,
reports with Pareto plots.

Example:
    >>> from jaxcomp.sweep import product, zip_
    >>> len(product({"seed": [0, 1]}, zip_({"a": [1, 2]}, {"b": [3, 4]})))
    4
"""

from jaxcomp.sweep.grid import Spec, axis, config_hash, expand, load_sweep, product, zip_

_LAZY = {"SweepRunner": "runner", "run_sweep": "runner", "vector_keys": "runner",
         "ResultStore": "store"}


def __getattr__(name: str):
    """The runner and the store (which import JAX) load on first use, so a sweep config
    that imports ``jaxcomp.sweep.grid`` and ``jaxcomp report`` start without JAX."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"jaxcomp.sweep.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'jaxcomp.sweep' has no attribute {name!r}")


__all__ = ["ResultStore", "Spec", "SweepRunner", "axis", "config_hash", "expand", "load_sweep",
           "product", "run_sweep", "vector_keys", "zip_"]
