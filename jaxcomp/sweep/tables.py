"""Number formats and padded markdown tables for sweep reports.

One format for every ``mean ± std`` cell: the std to 2 significant figures and
the mean rounded to the same decimal place (at most 6 significant figures of
the mean); a single run shows its value to 4 significant figures, integers in
full. Plot tick labels use :func:`tick_label` (``20k``, ``1.5M``).

Example:
    >>> fmt_stat({"mean": 0.97033, "std": 0.00431, "n": 3})
    '0.9703 ± 0.0043'
    >>> fmt_stat({"mean": 17324.0, "std": 103.2, "n": 3})
    '17320 ± 100'
    >>> print(markdown_table(["k", "acc"], [["0.5", "0.97 ± 0.01"], ["0.95", "0.6"]],
    ...                      right=[False, True]))
    | k    |         acc |
    |------|------------:|
    | 0.5  | 0.97 ± 0.01 |
    | 0.95 |         0.6 |
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def _fixed(v: float, d: int) -> str:
    """``v`` rounded to ``d`` decimals (``d < 0``: to tens, hundreds, ...)."""
    if d >= 0:
        return f"{v:.{d}f}"
    return str(int(round(v, d)))


def _mag(v: float) -> int:
    return math.floor(math.log10(abs(v))) if v else 0


def fmt_num(v: float, sig: int = 4) -> str:
    """One value: integers in full, others to ``sig`` significant figures.

    Example:
        >>> fmt_num(108416.0), fmt_num(0.96657), fmt_num(1.5e-06), fmt_num(float("nan"))
        ('108416', '0.9666', '1.500e-06', 'nan')
    """
    if not math.isfinite(v):
        return str(v)
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    if abs(v) < 1e-4 or abs(v) >= 1e9:
        return f"{v:.{sig - 1}e}"
    return _fixed(v, max(0, sig - 1 - _mag(v)))


def fmt_stat(s: dict[str, float]) -> str:
    """A ``{"mean", "std", "n"}`` cell: ``mean ± std`` (std to 2 significant figures,
    the mean to the same decimal place), the bare value for one run, ``—`` for none.

    Example:
        >>> fmt_stat({"mean": 50604.33, "std": 2.52, "n": 3})
        '50604.3 ± 2.5'
        >>> fmt_stat({"mean": 0.5, "std": 0.0, "n": 2}), fmt_stat({"mean": 3.0, "std": 0, "n": 1})
        ('0.5000 ± 0', '3')
    """
    n, m, sd = s.get("n", 0), s.get("mean", float("nan")), s.get("std", float("nan"))
    if not n or not math.isfinite(m):
        return "—"
    if n == 1 or not math.isfinite(sd):
        return fmt_num(m)
    if abs(m) >= 1e9 or 0 < abs(m) < 1e-4:
        return f"{m:.3e} ± {sd:.1e}"
    if sd == 0:
        return (fmt_num(m) if m == int(m) else _fixed(m, max(0, 3 - _mag(m)))) + " ± 0"
    d = min(1 - _mag(sd), 5 - _mag(m))
    return f"{_fixed(m, d)} ± {_fixed(sd, d)}"


def fmt_cell(v: Any) -> str:
    """Any table value: stats via :func:`fmt_stat`, floats via :func:`fmt_num` (``g``
    for config values such as 0.95), the rest as ``str``."""
    if isinstance(v, dict):
        return fmt_stat(v)
    if isinstance(v, float):
        return f"{v:g}"
    return "" if v is None else str(v)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]],
                   right: Sequence[bool] | None = None) -> str:
    """A markdown table with every column padded to its widest cell (numbers
    right-aligned where ``right`` says so), readable as plain text too."""
    right = list(right) if right is not None else [False] * len(header)
    width = [max([len(h), 3, *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.rjust(w) if r else c.ljust(w)
                                 for c, w, r in zip(cells, width, right, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 1) + ":" if r else "-" * (w + 2)
                          for w, r in zip(width, right, strict=True)) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def tick_label(v: float) -> str:
    """A short axis tick label: ``k``/``M``/``G`` suffixes, at most 3 significant figures.

    Example:
        >>> [tick_label(v) for v in (0, 0.25, 5, 20000, 22500, 1.5e6, 3e9)]
        ['0', '0.25', '5', '20k', '22.5k', '1.5M', '3G']
    """
    if v == 0 or not math.isfinite(v):
        return "0" if v == 0 else str(v)
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.3g}{suffix}"
    return f"{v:.3g}"
