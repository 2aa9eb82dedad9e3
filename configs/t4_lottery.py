"""Settings of paper table T4; run: ``jaxcomp reproduce T4``. They ship with jaxcomp:
the recipe, run command and expected numbers are in the docstring of
``jaxcomp/lab/tables/configs/t4_lottery.py``."""

from jaxcomp.lab.tables.configs.t4_lottery import get_config

__all__ = ["get_config"]
