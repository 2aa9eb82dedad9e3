"""Settings of paper table T3; run: ``jaxcomp reproduce T3``. They ship with jaxcomp:
the recipe, run command and expected numbers are in the docstring of
``jaxcomp/lab/tables/configs/t3_gradual.py``."""

from jaxcomp.lab.tables.configs.t3_gradual import get_config

__all__ = ["get_config"]
