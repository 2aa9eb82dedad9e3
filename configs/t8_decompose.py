"""Settings of paper table T8; run: ``jaxcomp reproduce T8``. They ship with jaxcomp:
the recipe, run command and expected numbers are in the docstring of
``jaxcomp/lab/tables/configs/t8_decompose.py``."""

from jaxcomp.lab.tables.configs.t8_decompose import get_config

__all__ = ["get_config"]
