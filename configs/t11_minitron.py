"""Settings of paper table T11; run: ``jaxcomp reproduce T11``. They ship with jaxcomp:
the recipe, run command and expected numbers are in the docstring of
``jaxcomp/lab/tables/configs/t11_minitron.py``."""

from jaxcomp.lab.tables.configs.t11_minitron import get_config

__all__ = ["get_config"]
