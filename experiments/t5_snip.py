"""Paper table T5: ``python experiments/t5_snip.py [--quick] [--out DIR]``, the same as
``jaxcomp reproduce T5``. The table's code ships with jaxcomp:
``jaxcomp/lab/tables/t5_snip.py``; its settings: ``configs/t5_snip.py``.
"""

from jaxcomp.lab.tables import main

if __name__ == "__main__":
    raise SystemExit(main("T5"))
