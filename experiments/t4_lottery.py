"""Paper table T4: ``python experiments/t4_lottery.py [--quick] [--out DIR]``, the same as
``jaxcomp reproduce T4``. The table's code ships with jaxcomp:
``jaxcomp/lab/tables/t4_lottery.py``; its settings: ``configs/t4_lottery.py``.
"""

from jaxcomp.lab.tables import main

if __name__ == "__main__":
    raise SystemExit(main("T4"))
