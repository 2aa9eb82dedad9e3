"""Settings of paper table T6; run: ``jaxcomp reproduce T6``. They ship with jaxcomp:
the recipe, run command and expected numbers are in the docstring of
``jaxcomp/lab/tables/configs/t6_hinton.py``."""

from jaxcomp.lab.tables.configs.t6_hinton import get_config

__all__ = ["get_config"]
