"""PNG plots of a sweep (matplotlib, Agg backend): accuracy vs size and FLOPs
with the Pareto front marked, and accuracy vs each swept value.

Example:
    >>> import tempfile, pathlib
    >>> table = [{"k": v, "n": 1, "diverged": 0,
    ...           "test_accuracy": {"mean": a, "std": 0.0, "n": 1},
    ...           "bytes": {"mean": b, "std": 0.0, "n": 1}}
    ...          for v, a, b in ((0.1, 0.9, 100.0), (0.5, 0.8, 50.0))]
    >>> files = write_plots(tempfile.mkdtemp(), table, ["k"], "test_accuracy")
    >>> sorted(pathlib.Path(f).name for f in files)
    ['test_accuracy_vs_bytes.png', 'test_accuracy_vs_k.png']
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

SIZE_KEYS = ("bytes", "nonzeros", "flops")


def _label(g: dict[str, Any], group_by: Sequence[str]) -> str:
    return ", ".join(f"{k.split('.')[-1]}={g[k]}" for k in group_by)


def _mean_std(table: list[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    m = np.array([g[key]["mean"] for g in table], np.float64)
    s = np.array([g[key]["std"] for g in table], np.float64)
    return m, np.nan_to_num(s)


def plot_pareto(path: str | os.PathLike, table: list[dict[str, Any]], group_by: Sequence[str],
                metric: str, size_key: str) -> None:
    """``metric`` against ``size_key`` (log x), error bars = std; front joined in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxcomp.sweep.report import pareto_front

    x, _ = _mean_std(table, size_key)
    y, ys = _mean_std(table, metric)
    front = np.array(pareto_front(x, y))
    fig, ax = plt.subplots(figsize=(6, 4.2))
    ax.errorbar(x, y, yerr=ys, fmt="o", color="tab:blue", alpha=0.8, label="runs (mean ± std)")
    if front.any():
        order = np.argsort(x[front])
        ax.plot(x[front][order], y[front][order], "-s", color="tab:red", label="Pareto front")
    for i, g in enumerate(table):
        if group_by:
            ax.annotate(_label(g, group_by), (x[i], y[i]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    ax.margins(x=0.12, y=0.08)
    pos = x[np.isfinite(x)]
    if pos.size and (pos > 0).all() and pos.max() / pos.min() > 10:
        ax.set_xscale("log")
    ax.set_xlabel(size_key)
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_vs_value(path: str | os.PathLike, table: list[dict[str, Any]], group_by: Sequence[str],
                  metric: str, key: str) -> None:
    """``metric`` against a swept value; one line per value of the other group keys."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    others = [k for k in group_by if k != key]
    lines: dict[str, list[dict[str, Any]]] = {}
    for g in table:
        lines.setdefault(_label(g, others), []).append(g)
    fig, ax = plt.subplots(figsize=(6, 4.2))
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
    ax.set_xlabel(key)
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    if any(lines):
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_plots(directory: str | os.PathLike, table: list[dict[str, Any]],
                group_by: Sequence[str], metric: str,
                sizes: Sequence[str] = ()) -> list[pathlib.Path]:
    """Write every plot that the table supports; returns their paths."""
    d = pathlib.Path(directory)
    files = []
    for size_key in dict.fromkeys([*sizes, *SIZE_KEYS]):
        if table and size_key in table[0] and np.isfinite(_mean_std(table, size_key)[0]).any():
            p = d / f"{metric}_vs_{size_key}.png"
            plot_pareto(p, table, group_by, metric, size_key)
            files.append(p)
    for key in group_by:
        p = d / f"{metric}_vs_{key.replace('/', '_')}.png"
        plot_vs_value(p, table, group_by, metric, key)
        files.append(p)
    return files
