"""Paper table T11: ``python experiments/t11_minitron.py [--quick] [--out DIR]``, the same as
``jaxcomp reproduce T11``. The table's code ships with jaxcomp:
``jaxcomp/lab/tables/t11_minitron.py``; its settings: ``configs/t11_minitron.py``.
"""

from jaxcomp.lab.tables import main

if __name__ == "__main__":
    raise SystemExit(main("T11"))
