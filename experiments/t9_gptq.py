"""Paper table T9: ``python experiments/t9_gptq.py [--quick] [--out DIR]``, the same as
``jaxcomp reproduce T9``. The table's code ships with jaxcomp:
``jaxcomp/lab/tables/t9_gptq.py``; its settings: ``configs/t9_gptq.py``.
"""

from jaxcomp.lab.tables import main

if __name__ == "__main__":
    raise SystemExit(main("T9"))
