"""Sweeps: config grids, a vectorized resumable runner, a JSONL results store,
reports with Pareto plots.

Example:
    >>> from jaxcomp.sweep import product, zip_
    >>> len(product({"seed": [0, 1]}, zip_({"a": [1, 2]}, {"b": [3, 4]})))
    4
"""

from jaxcomp.sweep.grid import Spec, axis, config_hash, expand, load_sweep, product, zip_
from jaxcomp.sweep.runner import SweepRunner, run_sweep, vector_keys
from jaxcomp.sweep.store import ResultStore

__all__ = ["ResultStore", "Spec", "SweepRunner", "axis", "config_hash", "expand", "load_sweep",
           "product", "run_sweep", "vector_keys", "zip_"]
