"""Settings of paper table T2; run: ``jaxcomp reproduce T2``. They ship with jaxcomp:
the recipe, run command and expected numbers are in the docstring of
``jaxcomp/lab/tables/configs/t2_deep_compression.py``."""

from jaxcomp.lab.tables.configs.t2_deep_compression import get_config

__all__ = ["get_config"]
