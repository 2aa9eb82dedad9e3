"""Settings of paper table T10; run: ``jaxcomp reproduce T10``. They ship with jaxcomp:
the recipe, run command and expected numbers are in the docstring of
``jaxcomp/lab/tables/configs/t10_sparsegpt.py``."""

from jaxcomp.lab.tables.configs.t10_sparsegpt import get_config

__all__ = ["get_config"]
