"""Experiments: configs, the family registry, one run from a config."""

from jaxcomp.experiment.config import apply_overrides, base_config, load_config
from jaxcomp.experiment.run import RunContext, make_optimizer, run_experiment

__all__ = ["RunContext", "apply_overrides", "base_config", "load_config", "make_optimizer",
           "run_experiment"]
