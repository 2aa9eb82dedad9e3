"""Paper table T3: ``python experiments/t3_gradual.py [--quick] [--out DIR]``, the same as
``jaxcomp reproduce T3``. The table's code ships with jaxcomp:
``jaxcomp/lab/tables/t3_gradual.py``; its settings: ``configs/t3_gradual.py``.
"""

from jaxcomp.lab.tables import main

if __name__ == "__main__":
    raise SystemExit(main("T3"))
