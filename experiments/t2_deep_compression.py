"""Paper table T2: ``python experiments/t2_deep_compression.py [--quick] [--out DIR]``, the same as
``jaxcomp reproduce T2``. The table's code ships with jaxcomp:
``jaxcomp/lab/tables/t2_deep_compression.py``; its settings: ``configs/t2_deep_compression.py``.
"""

from jaxcomp.lab.tables import main

if __name__ == "__main__":
    raise SystemExit(main("T2"))
