"""PNG plots of a sweep (matplotlib, Agg backend): accuracy vs stored size,
effective FLOPs and non-zeros with the Pareto front marked, and accuracy vs
each swept value.

Every plot has a title; size axes switch to a log scale over more than a
decade, with few major ticks labelled ``20k``/``1.5M`` and unlabelled minor
ticks; point labels stay inside the axes (they flip to the left of points near
the right edge and move down past one another); integer axes (e.g. bits) get
integer ticks.

Example:
    >>> import tempfile, pathlib
    >>> table = [{"k": v, "n": 1, "diverged": 0,
    ...           "test_accuracy": {"mean": a, "std": 0.0, "n": 1},
    ...           "stored_bytes": {"mean": b, "std": 0.0, "n": 1}}
    ...          for v, a, b in ((0.1, 0.9, 100.0), (0.5, 0.8, 50.0))]
    >>> files = write_plots(tempfile.mkdtemp(), table, ["k"], "test_accuracy")
    >>> sorted(pathlib.Path(f).name for f in files)
    ['test_accuracy_vs_k.png', 'test_accuracy_vs_stored_bytes.png']
"""

from __future__ import annotations

import math
import os
import pathlib
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxcomp.sweep.tables import tick_label

#: The default x axes of the Pareto plots (one is skipped where all runs share its value).
DEFAULT_AXES = ("stored_bytes", "flops_effective", "nonzeros")
FONT = 7  # point labels, points


def _label(g: dict[str, Any], group_by: Sequence[str]) -> str:
    return ", ".join(f"{k.split('.')[-1]}={g[k]}" for k in group_by)


def _mean_std(table: list[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    m = np.array([g[key]["mean"] for g in table], np.float64)
    s = np.array([g[key]["std"] for g in table], np.float64)
    return m, np.nan_to_num(s)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def format_axis(axis: Any, values: Sequence[float], *, integer: bool = False) -> bool:
    """Scale and ticks of one matplotlib axis (``ax.xaxis``) for ``values``: log
    over more than a decade (majors at 1-2-5, or 1 per decade beyond 3 decades),
    else at most 5 linear majors (integers only when ``integer``); labels by
    :func:`~jaxcomp.sweep.tables.tick_label`, minor labels off. Returns whether log.

    Example:
        >>> plt = _pyplot()
        >>> fig, ax = plt.subplots()
        >>> def shown(lo, hi):
        ...     _ = ax.plot([lo, hi], [0, 1]); log = format_axis(ax.xaxis, [lo, hi])
        ...     _ = ax.set_xlim(lo, hi); fig.canvas.draw()
        ...     return log, [t.get_text() for t in ax.get_xticklabels()
        ...                  if lo <= t.get_position()[0] <= hi]
        >>> shown(2e4, 9e4)
        (False, ['30k', '45k', '60k', '75k', '90k'])
        >>> shown(3e4, 9e5)
        (True, ['50k', '100k', '200k', '500k'])
        >>> plt.close(fig)
    """
    from matplotlib import ticker

    v = np.asarray([x for x in values if np.isfinite(x)], np.float64)
    log = bool(v.size and (v > 0).all() and v.max() / v.min() > 10)
    fmt = ticker.FuncFormatter(lambda x, _pos: tick_label(x))
    if log:
        getattr(axis.axes, f"set_{axis.axis_name}scale")("log")
        decades = math.log10(v.max() / v.min())
        subs = (1.0,) if decades > 3 else (1.0, 2.0, 5.0)
        axis.set_major_locator(ticker.LogLocator(base=10, subs=subs, numticks=12))
        axis.set_minor_locator(ticker.LogLocator(base=10, subs="auto", numticks=12))
    else:
        axis.set_major_locator(ticker.MaxNLocator(nbins=5, integer=integer))
    axis.set_major_formatter(fmt)
    axis.set_minor_formatter(ticker.NullFormatter())
    return log


def place_labels(ax: Any, xs: Sequence[float], ys: Sequence[float], labels: Sequence[str],
                 fontsize: float = FONT) -> list[tuple[float, float, str]]:
    """Annotate points so their labels stay inside the axes and cover neither each
    other nor the markers: right of the point (left of it past 65% of the width),
    above, else below, else on the other side, else a line further up or down
    (joined to its point by a thin leader line). Returns the ``(dx, dy, ha)``
    offsets (points) per label."""
    fig = ax.figure
    fig.canvas.draw()  # fixes the limits and the transforms
    pt = 72.0 / fig.dpi
    box = ax.get_window_extent()
    x_lo, x_hi, y_lo, y_hi = box.x0 * pt, box.x1 * pt, box.y0 * pt, box.y1 * pt
    ok = [bool(np.isfinite(x) and np.isfinite(y)) for x, y in zip(xs, ys, strict=True)]
    anchor = [tuple(ax.transData.transform((x, y)) * pt) if k else (0.0, 0.0)
              for x, y, k in zip(xs, ys, ok, strict=True)]
    placed = [(px - 4, px + 4, py - 4, py + 4) for (px, py), k in zip(anchor, ok, strict=True)
              if k]
    offsets: dict[int, tuple[float, float, str]] = {}
    for i in sorted(range(len(xs)), key=lambda i: -anchor[i][1]):
        if not ok[i] or not labels[i]:
            offsets[i] = (0.0, 0.0, "left")
            continue
        px, py = anchor[i]
        w, h = 0.6 * fontsize * len(labels[i]), 1.3 * fontsize
        prefer_left = (px - x_lo) / max(x_hi - x_lo, 1) > 0.65
        sides = [s for s in ((True, False) if prefer_left else (False, True))
                 if (px - 4 - w >= x_lo if s else px + 4 + w <= x_hi)] or [prefer_left]
        choice = None  # the first free spot, else the first inside the axes
        for left, dy in [(s, d) for k in range(8) for s in sides
                         for d in (3.0 + k * h, -h - 3.0 - k * h)]:
            x0, y0 = (px - 4 - w if left else px + 4), py + dy
            if not (y_lo <= y0 and y0 + h <= y_hi):
                continue
            free = not any(x0 < b[1] and b[0] < x0 + w and y0 < b[3] and b[2] < y0 + h
                           for b in placed)
            if choice is None or free:
                choice = (left, dy, x0)
            if free:
                break
        left, dy, x0 = choice or (prefer_left, 3.0, px - 4 - w if prefer_left else px + 4)
        dx = -4.0 if left else 4.0
        placed.append((x0, x0 + w, py + dy, py + dy + h))
        offsets[i] = (dx, dy, "right" if left else "left")
        far = dy > 3.0 + h / 2 or dy < -h - 3.0 - h / 2  # moved past the first ring
        ax.annotate(labels[i], (xs[i], ys[i]), xytext=(dx, dy), textcoords="offset points",
                    ha=offsets[i][2], va="bottom", fontsize=fontsize, clip_on=True,
                    arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.55", "shrinkA": 0,
                                "shrinkB": 3, "relpos": (1.0 if left else 0.0,
                                                         0.0 if dy > 0 else 1.0)}
                    if far else None)
    return [offsets[i] for i in range(len(xs))]


def merged_labels(xs: Sequence[float], ys: Sequence[float], table: list[dict[str, Any]],
                  group_by: Sequence[str]) -> list[str]:
    """One label per distinct point: groups at the same ``(x, y)`` share it, their
    values joined by ``/`` (``sparsity=0.5, bits=4/8``); the others get ``""``.

    Example:
        >>> t = [{"s": 0.5, "b": 4}, {"s": 0.5, "b": 8}, {"s": 0.9, "b": 4}]
        >>> merged_labels([1.0, 1.0, 2.0], [0.9, 0.9, 0.8], t, ["s", "b"])
        ['s=0.5, b=4/8', '', 's=0.9, b=4']
    """
    first: dict[tuple[float, float], list[int]] = {}
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        first.setdefault((float(x), float(y)), []).append(i)
    out = [""] * len(xs)
    for members in first.values():
        out[members[0]] = ", ".join(
            f"{k.split('.')[-1]}=" + "/".join(dict.fromkeys(str(table[i][k]) for i in members))
            for k in group_by)
    return out


def plot_pareto(path: str | os.PathLike, table: list[dict[str, Any]], group_by: Sequence[str],
                metric: str, size_key: str, description: str = "") -> None:
    """Write :func:`draw_pareto`'s figure to ``path``."""
    fig = draw_pareto(table, group_by, metric, size_key, description)
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)


def draw_pareto(table: list[dict[str, Any]], group_by: Sequence[str], metric: str,
                size_key: str, description: str = "") -> Any:
    """A figure of ``metric`` against ``size_key`` (log x over a decade), error
    bars = std; the front joined in red; ``description`` names the axis in the title."""
    plt = _pyplot()
    from jaxcomp.sweep.report import pareto_front

    x, _ = _mean_std(table, size_key)
    y, ys = _mean_std(table, metric)
    front = np.array(pareto_front(x, y))
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    ax.errorbar(x, y, yerr=ys, fmt="o", color="tab:blue", alpha=0.8, label="runs (mean ± std)")
    if front.any():
        order = np.argsort(x[front])
        ax.plot(x[front][order], y[front][order], "-s", color="tab:red", label="Pareto front")
    ax.margins(x=0.08, y=0.1)
    format_axis(ax.xaxis, x)
    ax.set_xlabel(size_key)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} vs {size_key}" + ("\n" + textwrap.fill(description, 90)
                                              if description else ""), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    if group_by:
        place_labels(ax, x, y, merged_labels(x, y, table, group_by))
    return fig


def plot_vs_value(path: str | os.PathLike, table: list[dict[str, Any]], group_by: Sequence[str],
                  metric: str, key: str) -> None:
    """Write :func:`draw_vs_value`'s figure to ``path``."""
    fig = draw_vs_value(table, group_by, metric, key)
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)


def draw_vs_value(table: list[dict[str, Any]], group_by: Sequence[str], metric: str,
                  key: str) -> Any:
    """A figure of ``metric`` against a swept value; one line per value of the other
    group keys; integer ticks when every value is an integer."""
    plt = _pyplot()
    from matplotlib import ticker

    others = [k for k in group_by if k != key]
    lines: dict[str, list[dict[str, Any]]] = {}
    for g in table:
        lines.setdefault(_label(g, others), []).append(g)
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    numeric = all(isinstance(g[key], int | float) and not isinstance(g[key], bool)
                  for g in table)
    for label, gs in lines.items():
        xs = [g[key] for g in gs]
        if numeric:
            order = np.argsort(xs)
            gs = [gs[i] for i in order]
            xs = [xs[i] for i in order]
        else:
            xs = [str(v) for v in xs]
        y, ys = _mean_std(gs, metric)
        ax.errorbar(xs, y, yerr=ys, fmt="-o", capsize=3, label=label or None)
    if numeric:
        integer = all(isinstance(g[key], int) for g in table)
        ax.xaxis.set_major_locator(ticker.MaxNLocator(nbins=6, integer=integer))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _p: tick_label(v)))
    ax.margins(x=0.06)
    ax.set_xlabel(key)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} vs {key}" + (f" (one line per {', '.join(others)})" if others
                                          else "") + "; mean ± std over seeds", fontsize=9)
    ax.grid(alpha=0.3)
    if any(lines):
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def write_plots(directory: str | os.PathLike, table: list[dict[str, Any]],
                group_by: Sequence[str], metric: str, sizes: Sequence[str] = (),
                descriptions: Mapping[str, str] | None = None) -> list[pathlib.Path]:
    """Write every plot that the table supports; returns their paths.

    Pareto plots: each ``sizes`` key, then each of :data:`DEFAULT_AXES` that has more
    than one distinct value (one value would be a vertical line). ``descriptions``
    name axes in the titles (e.g. the encodings behind ``stored_bytes``).
    """
    d = pathlib.Path(directory)
    files = []
    for size_key in dict.fromkeys([*sizes, *DEFAULT_AXES]):
        if not table or size_key not in table[0]:
            continue
        x = _mean_std(table, size_key)[0]
        finite = x[np.isfinite(x)]
        if not finite.size or (size_key not in sizes and np.ptp(finite) <= 1e-9 * abs(
                finite).max()):
            continue
        p = d / f"{metric}_vs_{size_key}.png"
        plot_pareto(p, table, group_by, metric, size_key, (descriptions or {}).get(size_key, ""))
        files.append(p)
    for key in group_by:
        p = d / f"{metric}_vs_{key.replace('/', '_')}.png"
        plot_vs_value(p, table, group_by, metric, key)
        files.append(p)
    return files
