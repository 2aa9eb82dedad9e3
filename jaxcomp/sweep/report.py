"""Tables from a sweep directory: one row per group of runs (``--group-by``
keys; by default the swept keys except ``seed``), mean ± std over the runs in
it (its seeds), as markdown and CSV.

The default size is ``stored_bytes`` (the compressed model as it would be
saved; its ``encoding`` is a table column) and the default FLOPs are
``flops_effective`` (named by ``flops_counting``), beside the dense ``flops``.
Result stores written before those keys existed fall back per run to
``int_bytes`` then ``bytes``, and to ``flops``; the report says which.

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
from jaxcomp.sweep.tables import fmt_cell, markdown_table

SIZE_KEY, FLOPS_KEY = "stored_bytes", "flops_effective"
LEDGER_KEYS = ("nonzeros", SIZE_KEY, FLOPS_KEY, "flops")
SKIP_METRICS = ("diverged", "diverged_step", "total_seconds", "train_loss", "train_accuracy",
                "train_seconds", "bytes_fp32", "params", "index")
#: Per-run fallbacks (in order) for ledgers written before a default key existed.
FALLBACKS = {SIZE_KEY: ("int_bytes", "bytes"), FLOPS_KEY: ("flops",)}
#: The ledger's text key naming how each default key was counted.
LABELS = {SIZE_KEY: "encoding", FLOPS_KEY: "flops_counting"}


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


def _fallback_label(key: str, used: str, row: dict[str, Any]) -> str:
    if used == "int_bytes":
        return "int codes (int_bytes)"
    if used == "bytes":
        return "fp32 dense" if row.get("bytes") == row.get("bytes_fp32") else \
            "fp32 sparse (bytes)"
    return "dense"


def fill_fallbacks(rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Give rows that lack ``stored_bytes`` / ``flops_effective`` (older ledgers) the
    first of their :data:`FALLBACKS` (and a matching ``encoding`` / ``flops_counting``);
    returns ``{key: {fallback used: runs}}``.

    Example:
        >>> rows = [{"int_bytes": 10, "bytes": 40, "flops": 5.0}]
        >>> fill_fallbacks(rows), rows[0]["stored_bytes"], rows[0]["encoding"]
        ({'stored_bytes': {'int_bytes': 1}, 'flops_effective': {'flops': 1}}, 10, \
'int codes (int_bytes)')
    """
    used: dict[str, dict[str, int]] = {}
    for r in rows:
        for key, chain in FALLBACKS.items():
            if isinstance(r.get(key), int | float):
                continue
            for fk in chain:
                if isinstance(r.get(fk), int | float) and not isinstance(r.get(fk), bool):
                    r[key] = r[fk]
                    r[LABELS[key]] = _fallback_label(key, fk, r)
                    used.setdefault(key, {})
                    used[key][fk] = used[key].get(fk, 0) + 1
                    break
    return used


def label_counts(rows: list[dict[str, Any]], key: str) -> dict[str, int]:
    """``{value: runs}`` of a text ledger key (e.g. ``encoding``), in order of appearance."""
    out: dict[str, int] = {}
    for r in rows:
        if isinstance(r.get(key), str):
            out[r[key]] = out.get(r[key], 0) + 1
    return out


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
    (e.g. a ledger entry), then the ledger's non-zeros, stored bytes, effective and
    dense FLOPs; each column once."""
    first = ["test_accuracy", "test_nll"]
    keys = numeric_keys(rows, config_keys)
    others = sorted(k for k in keys if "." not in k and k not in first and
                    k not in SKIP_METRICS and k not in LEDGER_KEYS and
                    (metric_names is None or k in metric_names))
    cols = [k for k in first if k in keys] + others + list(extra)
    cols += [k for k in LEDGER_KEYS if k in keys]
    return list(dict.fromkeys(cols))


def _stats(values: list[float]) -> dict[str, float]:
    a = np.asarray([v for v in values if v is not None and math.isfinite(v)], np.float64)
    if a.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if a.size > 1 else 0.0,
            "n": int(a.size)}


def aggregate(rows: list[dict[str, Any]], group_by: Sequence[str],
              metrics: Sequence[str], text: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Group rows by ``group_by`` values (in order of first appearance); per group
    ``n`` (runs), ``diverged`` (count), ``{mean, std, n}`` per metric over the
    runs that did not diverge, and the distinct values of each ``text`` key
    joined by `` / ``."""
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
        for k in text:
            g[k] = " / ".join(dict.fromkeys(str(r[k]) for r in members if r.get(k) is not None))
        out.append(g)
    return out


def to_markdown(table: list[dict[str, Any]], group_by: Sequence[str], metrics: Sequence[str],
                pareto: Sequence[bool] | None = None, text: Sequence[str] = ()) -> str:
    """A padded markdown table (numbers right-aligned); ``pareto`` marks rows on the
    accuracy/size front with ``*``; ``text`` columns (e.g. ``encoding``) follow ``n``."""
    cols = list(group_by) + ["n"] + list(text) + list(metrics) + ["diverged"]
    head = cols + (["pareto"] if pareto is not None else [])
    right = [c in metrics or c in ("n", "diverged") for c in cols] + \
        ([False] if pareto is not None else [])
    rows = []
    for i, g in enumerate(table):
        cells = [fmt_cell(g.get(c)) for c in cols]
        if pareto is not None:
            cells.append("*" if pareto[i] else "")
        rows.append(cells)
    return markdown_table(head, rows, right)


def write_csv(path: str | os.PathLike, table: list[dict[str, Any]], group_by: Sequence[str],
              metrics: Sequence[str], text: Sequence[str] = ()) -> None:
    """One row per group: the group keys, ``n``, ``diverged``, the ``text`` columns,
    ``<metric>_mean/_std``."""
    header = list(group_by) + ["n", "diverged"] + list(text)
    for m in metrics:
        header += [f"{m}_mean", f"{m}_std"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for g in table:
            row = [g.get(k) for k in group_by] + [g["n"], g["diverged"]] + \
                [g.get(k) for k in text]
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


def _caption(rows: list[dict[str, Any]], used: dict[str, dict[str, int]],
             metrics: Sequence[str]) -> str:
    """What the default size and FLOPs columns hold, and which fallbacks were used."""
    parts = []
    if SIZE_KEY in metrics:
        enc = label_counts(rows, "encoding")
        parts.append(f"size = `{SIZE_KEY}`: bytes of the compressed model as it would be "
                     "saved, under the encoding in the `encoding` column ("
                     + "; ".join(f"{e}: {n} runs" for e, n in enc.items()) + ")")
    if FLOPS_KEY in metrics:
        cnt = label_counts(rows, "flops_counting")
        parts.append(f"FLOPs = `{FLOPS_KEY}` (" + "; ".join(f"{c}: {n} runs"
                                                              for c, n in cnt.items())
                     + "), beside the dense `flops`")
    for key, fks in used.items():
        parts.append(f"{sum(fks.values())} runs lack `{key}` (older ledgers): "
                     + ", ".join(f"`{fk}` used for {n}" for fk, n in fks.items()))
    return "".join(f"{p}.\n" for p in parts)


def write_report(directory: str | os.PathLike, group_by: Sequence[str] | None = None,
                 metric: str = "test_accuracy", plots: bool = True,
                 sizes: Sequence[str] | None = None,
                 columns: Sequence[str] | None = None) -> dict[str, Any]:
    """Write ``report.md``, ``report.csv`` and the PNG plots into ``directory``.

    ``sizes`` are extra x axes for the Pareto plots (the first one also marks
    the table's ``pareto`` column; default ``stored_bytes``), e.g.
    ``decompose_totals.params_after``; ``columns`` are extra table columns (any
    numeric metric or ledger key). A key named twice is shown once.

    Returns ``{"markdown", "text", "table", "group_by", "metrics", "size_key",
    "fallbacks", "files"}``.
    """
    d = pathlib.Path(directory)
    rows, manifest = load_rows(d)
    used = fill_fallbacks(rows)
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
    sizes = list(dict.fromkeys(sizes or ()))
    metrics = metric_columns(rows, cfg_keys, [metric, *sizes, *(columns or ())], metric_names)
    text_cols = ["encoding"] if any(isinstance(r.get("encoding"), str) for r in rows) else []
    table = aggregate(rows, gb, metrics, text_cols)
    size_key = next((k for k in (*sizes, SIZE_KEY, "nonzeros") if k in metrics), None)
    front = pareto_front([g[size_key]["mean"] for g in table],
                         [g[metric]["mean"] for g in table]) if size_key else None
    md = to_markdown(table, gb, metrics, front, text_cols)
    title = manifest.get("config_path") or str(d)
    text = (f"# Sweep report: {title}\n\n{len(rows)} runs in {len(table)} group(s), grouped by "
            f"{', '.join(gb) or '(all runs)'}; mean ± std over the runs of each group (std to "
            "2 significant figures, the mean to the same decimal place)"
            + (f"; pareto = on the {metric} vs {size_key} front" if front else "") + ".\n"
            + _caption(rows, used, metrics) + "\n" + md + "\n")
    files = [d / "report.md", d / "report.csv"]
    (d / "report.md").write_text(text)
    write_csv(d / "report.csv", table, gb, metrics, text_cols)
    if plots:
        from jaxcomp.sweep.plots import write_plots

        axes = {SIZE_KEY: "stored bytes (" + ", ".join(label_counts(rows, "encoding")) + ")",
                FLOPS_KEY: "effective FLOPs (" + ", ".join(label_counts(rows, "flops_counting"))
                + ")"}
        files += write_plots(d, table, gb, metric, sizes, axes)
    return {"markdown": md, "text": text, "table": table, "group_by": gb, "metrics": metrics,
            "size_key": size_key, "fallbacks": used, "files": [str(f) for f in files]}
