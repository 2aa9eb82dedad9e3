"""Paper table T6: ``python experiments/t6_hinton.py [--quick] [--out DIR]``, the same as
``jaxcomp reproduce T6``. The table's code ships with jaxcomp:
``jaxcomp/lab/tables/t6_hinton.py``; its settings: ``configs/t6_hinton.py``.
"""

from jaxcomp.lab.tables import main

if __name__ == "__main__":
    raise SystemExit(main("T6"))
