"""Paper table T1: ``python experiments/t1_han.py [--quick] [--out DIR]``, the same as
``jaxcomp reproduce T1``. The table's code ships with jaxcomp:
``jaxcomp/lab/tables/t1_han.py``; its settings: ``configs/t1_han.py``.
"""

from jaxcomp.lab.tables import main

if __name__ == "__main__":
    raise SystemExit(main("T1"))
