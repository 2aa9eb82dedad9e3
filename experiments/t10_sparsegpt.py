"""Paper table T10: ``python experiments/t10_sparsegpt.py [--quick] [--out DIR]``, the same as
``jaxcomp reproduce T10``. The table's code ships with jaxcomp:
``jaxcomp/lab/tables/t10_sparsegpt.py``; its settings: ``configs/t10_sparsegpt.py``.
"""

from jaxcomp.lab.tables import main

if __name__ == "__main__":
    raise SystemExit(main("T10"))
