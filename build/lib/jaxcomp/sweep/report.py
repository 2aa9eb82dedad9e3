"""Tables from a sweep directory: one row per group of runs (``--group-by``
keys; by default the swept keys except ``seed``), mean ± std over the runs in
it (its seeds), as markdown and CSV.

Example:
    >>> rows = [{"prune.sparsity": 0.5, "seed": s, "status": "ok", "test_accuracy": a}
    ...         for s, a in ((0, 0.8), (1, 0.9))]
    >>> t = aggregate(rows, ["prune.sparsity"], ["test_accuracy"])
    >>> round(t[0]["test_accuracy"]["mean"], 3), t[0]["n"]
    (0.85, 2)
"""

from __future__ import annotations

import csv
import math
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxcomp.core.errors import ConfigError, suggest
from jaxcomp.sweep.store import RESULTS, ResultStore

LEDGER_KEYS = ("nonzeros", "bytes", "flops")
SKIP_METRICS = ("diverged", "diverged_step", "total_seconds", "train_loss", "train_accuracy",
                "train_seconds", "bytes_fp32", "params", "index")


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def load_rows(directory: str | os.PathLike) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One flat row per run (config keys dotted, metrics and ledger at top level)
    and the sweep manifest.

    Raises:
      ConfigError: the directory holds no results.
    """
    d = pathlib.Path(directory)
    if not (d / RESULTS).is_file():
        raise ConfigError(f"report: {str(d)!r} holds no {RESULTS} (run `jaxcomp sweep CONFIG "
                          f"--out {d}` first)")
    store = ResultStore(d)
    manifest = store.read_manifest() or {}
    rows = []
    for r in store.latest():
        if r.get("status") == "error":
            continue
        row = _flatten(r.get("config", {}))
        row.update(_flatten(r.get("ledger", {})))
        row.update(_flatten(r.get("metrics", {})))
        row.update({"status": r.get("status"), "path": r.get("path"), "key": r.get("key"),
                    "seed": r.get("seed", row.get("seed"))})
        rows.append(row)
    if not rows:
        raise ConfigError(f"report: {str(d)!r} holds no finished runs")
    return rows, manifest


def default_group_by(manifest: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    """The swept keys except ``seed`` (those that vary, if the manifest lacks them)."""
    keys = manifest.get("swept_keys")
    if keys is None:
        keys = [k for k in rows[0] if len({repr(r.get(k)) for r in rows}) > 1
                and k not in ("key", "seed") and not isinstance(rows[0].get(k), float)]
    return [k for k in keys if k != "seed"]


def numeric_keys(rows: list[dict[str, Any]], config_keys: set[str]) -> list[str]:
    """Every numeric metric/ledger key of the rows (nested ones dotted)."""
    out: list[str] = []
    for r in rows:
        for k, v in r.items():
            if k not in config_keys and k not in out and isinstance(v, int | float) and \
                    not isinstance(v, bool):
                out.append(k)
    return out


def metric_columns(rows: list[dict[str, Any]], config_keys: set[str],
                   extra: Sequence[str] = (), metric_names: set[str] | None = None
                   ) -> list[str]:
    """Table columns: accuracy first, then the other top-level numeric metrics
    (``metric_names``: the records' ``metrics`` keys; all when ``None``), ``extra``
    (e.g. a ledger entry), then the ledger's non-zeros, bytes and FLOPs."""
    first = ["test_accuracy", "test_nll"]
    keys = numeric_keys(rows, config_keys)
    others = sorted(k for k in keys if "." not in k and k not in first and
                    k not in SKIP_METRICS and k not in LEDGER_KEYS and
                    (metric_names is None or k in metric_names))
    cols = [k for k in first if k in keys] + others
    cols += [k for k in extra if k not in cols]
    return cols + [k for k in LEDGER_KEYS if k in keys and k not in cols]


def _stats(values: list[float]) -> dict[str, float]:
    a = np.asarray([v for v in values if v is not None and math.isfinite(v)], np.float64)
    if a.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if a.size > 1 else 0.0,
            "n": int(a.size)}


def aggregate(rows: list[dict[str, Any]], group_by: Sequence[str],
              metrics: Sequence[str]) -> list[dict[str, Any]]:
    """Group rows by ``group_by`` values (in order of first appearance); per group
    ``n`` (runs), ``diverged`` (count) and ``{mean, std, n}`` per metric over the
    runs that did not diverge."""
    if rows:
        known = set().union(*(r.keys() for r in rows))
        for k in group_by:
            if k not in known:
                raise ConfigError(f"report --group-by: unknown key {k!r}"
                                  f"{suggest(k, sorted(known))}")
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(repr([r.get(k) for k in group_by]), []).append(r)
    out = []
    for members in groups.values():
        ok = [r for r in members if r.get("status") != "diverged"]
        g = {k: members[0].get(k) for k in group_by}
        g["n"] = len(members)
        g["diverged"] = len(members) - len(ok)
        for m in metrics:
            vals = [r.get(m) for r in ok if isinstance(r.get(m), int | float)]
            g[m] = _stats(vals)
        out.append(g)
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, dict):
        if v["n"] == 0:
            return "—"
        m, s = v["mean"], v["std"]
        if abs(m) >= 1e3:
            return f"{m:.4g}" + (f" ± {s:.2g}" if s else "")
        return f"{m:.4f} ± {s:.4f}" if v["n"] > 1 else f"{m:.4f}"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def to_markdown(table: list[dict[str, Any]], group_by: Sequence[str], metrics: Sequence[str],
                pareto: Sequence[bool] | None = None) -> str:
    """A markdown table; ``pareto`` marks rows on the accuracy/size front with ``*``."""
    cols = list(group_by) + ["n"] + list(metrics) + ["diverged"]
    head = cols + (["pareto"] if pareto is not None else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, g in enumerate(table):
        cells = [_fmt(g.get(c)) for c in cols]
        if pareto is not None:
            cells.append("*" if pareto[i] else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_csv(path: str | os.PathLike, table: list[dict[str, Any]], group_by: Sequence[str],
              metrics: Sequence[str]) -> None:
    """One row per group: the group keys, ``n``, ``diverged``, ``<metric>_mean/_std``."""
    header = list(group_by) + ["n", "diverged"]
    for m in metrics:
        header += [f"{m}_mean", f"{m}_std"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for g in table:
            row = [g.get(k) for k in group_by] + [g["n"], g["diverged"]]
            for m in metrics:
                row += [g[m]["mean"], g[m]["std"]]
            w.writerow(row)


def pareto_front(sizes: Sequence[float], accuracies: Sequence[float]) -> list[bool]:
    """Which points no other point dominates (smaller-or-equal size and
    greater-or-equal accuracy, strictly better in one). NaNs are never on it.

    Example:
        >>> pareto_front([1, 2, 3, 2], [0.5, 0.7, 0.6, 0.4])
        [True, True, False, False]
    """
    s = np.asarray(sizes, np.float64)
    a = np.asarray(accuracies, np.float64)
    ok = np.isfinite(s) & np.isfinite(a)
    out = []
    for i in range(len(s)):
        if not ok[i]:
            out.append(False)
            continue
        dom = ok & (s <= s[i]) & (a >= a[i]) & ((s < s[i]) | (a > a[i]))
        out.append(not bool(dom.any()))
    return out


def write_report(directory: str | os.PathLike, group_by: Sequence[str] | None = None,
                 metric: str = "test_accuracy", plots: bool = True,
                 sizes: Sequence[str] | None = None,
                 columns: Sequence[str] | None = None) -> dict[str, Any]:
    """Write ``report.md``, ``report.csv`` and the PNG plots into ``directory``.

    ``sizes`` are extra x axes for the Pareto plots (the first one also marks
    the table's ``pareto`` column), e.g. ``decompose_totals.params_after``;
    ``columns`` are extra table columns (any numeric metric or ledger key).

    Returns ``{"markdown", "table", "group_by", "metrics", "files"}``.
    """
    d = pathlib.Path(directory)
    rows, manifest = load_rows(d)
    gb = list(group_by) if group_by is not None else default_group_by(manifest, rows)
    cfg_keys = set(manifest.get("config_keys") or ()) | {"name", "seed", "status", "path", "key"}
    metric_names: set[str] = set()
    for r in ResultStore(d).latest():
        cfg_keys |= set(_flatten(r.get("config", {})))
        metric_names |= set(r.get("metrics", {}))
    known = numeric_keys(rows, cfg_keys)
    for what, k in [("--metric", metric)] + [("--size", k) for k in sizes or ()] + \
            [("--column", k) for k in columns or ()]:
        if k not in known:
            raise ConfigError(f"report {what}: {k!r} is not a numeric metric or ledger entry of "
                              f"these runs{suggest(k, known)}")
    metrics = metric_columns(rows, cfg_keys, [metric, *(sizes or ()), *(columns or ())],
                             metric_names)
    table = aggregate(rows, gb, metrics)
    size_key = next((k for k in (*(sizes or ()), "bytes", "nonzeros") if k in metrics), None)
    front = pareto_front([g[size_key]["mean"] for g in table],
                         [g[metric]["mean"] for g in table]) if size_key else None
    md = to_markdown(table, gb, metrics, front)
    title = manifest.get("config_path") or str(d)
    text = (f"# Sweep report: {title}\n\n{len(rows)} runs in {len(table)} group(s), grouped by "
            f"{', '.join(gb) or '(all runs)'}; mean ± std over the runs of each group"
            + (f"; pareto = on the {metric} vs {size_key} front" if front else "") + ".\n\n"
            + md + "\n")
    files = [d / "report.md", d / "report.csv"]
    (d / "report.md").write_text(text)
    write_csv(d / "report.csv", table, gb, metrics)
    if plots:
        from jaxcomp.sweep.plots import write_plots

        files += write_plots(d, table, gb, metric, sizes or ())
    return {"markdown": md, "text": text, "table": table, "group_by": gb, "metrics": metrics,
            "files": [str(f) for f in files]}
