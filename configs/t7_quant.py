"""Settings of paper table T7; run: ``jaxcomp reproduce T7``. They ship with jaxcomp:
the recipe, run command and expected numbers are in the docstring of
``jaxcomp/lab/tables/configs/t7_quant.py``."""

from jaxcomp.lab.tables.configs.t7_quant import get_config

__all__ = ["get_config"]
