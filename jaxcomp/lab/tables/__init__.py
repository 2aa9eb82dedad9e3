"""Paper-table reproductions, one module per table (``t<n>_<name>.py``, defining
``TABLE``, ``TITLE`` and ``run(quick) -> TableResult``), with their configs in
:mod:`jaxcomp.lab.tables.configs`. ``jaxcomp reproduce T<n>`` runs them; so does
``python experiments/t<n>_<name>.py`` in a checkout.

Example:
    >>> table_modules()["T1"]
    'jaxcomp.lab.tables.t1_han'
"""

from __future__ import annotations

import pkgutil
import re
import sys
from collections.abc import Sequence


def table_modules() -> dict[str, str]:
    """``{"T1": "jaxcomp.lab.tables.t1_han", ...}``, found among this package's modules."""
    out = {}
    for info in pkgutil.iter_modules(__path__):
        m = re.fullmatch(r"t(\d+)_\w+", info.name)
        if m:
            out[f"T{m.group(1)}"] = f"{__name__}.{info.name}"
    return dict(sorted(out.items(), key=lambda kv: int(kv[0][1:])))


def main(table: str, argv: Sequence[str] | None = None) -> int:
    """``jaxcomp reproduce <table> [argv...]``: the entry the ``experiments/`` scripts call."""
    from jaxcomp.cli import main as cli_main

    return cli_main(["reproduce", table, *(sys.argv[1:] if argv is None else argv)])
