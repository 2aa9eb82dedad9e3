"""Settings of paper table T5; run: ``jaxcomp reproduce T5``. They ship with jaxcomp:
the recipe, run command and expected numbers are in the docstring of
``jaxcomp/lab/tables/configs/t5_snip.py``."""

from jaxcomp.lab.tables.configs.t5_snip import get_config

__all__ = ["get_config"]
