"""Paper table T8: ``python experiments/t8_decompose.py [--quick] [--out DIR]``, the same as
``jaxcomp reproduce T8``. The table's code ships with jaxcomp:
``jaxcomp/lab/tables/t8_decompose.py``; its settings: ``configs/t8_decompose.py``.
"""

from jaxcomp.lab.tables import main

if __name__ == "__main__":
    raise SystemExit(main("T8"))
