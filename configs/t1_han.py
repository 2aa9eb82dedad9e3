"""Settings of paper table T1; run: ``jaxcomp reproduce T1``. They ship with jaxcomp:
the recipe, run command and expected numbers are in the docstring of
``jaxcomp/lab/tables/configs/t1_han.py``."""

from jaxcomp.lab.tables.configs.t1_han import get_config

__all__ = ["get_config"]
