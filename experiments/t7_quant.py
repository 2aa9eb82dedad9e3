"""Paper table T7: ``python experiments/t7_quant.py [--quick] [--out DIR]``, the same as
``jaxcomp reproduce T7``. The table's code ships with jaxcomp:
``jaxcomp/lab/tables/t7_quant.py``; its settings: ``configs/t7_quant.py``.
"""

from jaxcomp.lab.tables import main

if __name__ == "__main__":
    raise SystemExit(main("T7"))
