"""Settings of paper table T9; run: ``jaxcomp reproduce T9``. They ship with jaxcomp:
the recipe, run command and expected numbers are in the docstring of
``jaxcomp/lab/tables/configs/t9_gptq.py``."""

from jaxcomp.lab.tables.configs.t9_gptq import get_config

__all__ = ["get_config"]
