"""Paper-table reproductions: claims, results files and the registry behind
``jaxcomp reproduce``.

A table lives in ``jaxcomp/lab/tables/t<n>_<name>.py`` (shipped with the
package) and defines ``TABLE = "T<n>"``, ``TITLE`` and
``run(quick: bool) -> TableResult``. Its config is
``jaxcomp/lab/tables/configs/t<n>_<name>.py``. :func:`write_results` writes
``T<n>.md`` and ``.json`` (``docs/results`` in a checkout) with the paper's numbers beside ours,
each claim with its threshold and PASS/FAIL, the command, the date, the git
commit and the machine.

Example:
    >>> c = Claim("a", "ticket >= dense - 0.5 pt", value=-0.2, threshold=-0.5, op=">=")
    >>> c.passed
    True
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib
import json
import os
import pathlib
import platform
import subprocess
from typing import Any

import numpy as np

from jaxcomp.core.errors import ConfigError, suggest

OPS = {">=": np.greater_equal, "<=": np.less_equal, ">": np.greater, "<": np.less}


@dataclasses.dataclass
class Claim:
    """A relative claim: ``value op threshold`` (e.g. ``acc_drop <= 1.0``)."""

    id: str
    text: str
    value: float
    threshold: float
    op: str = ">="
    gating: bool = True

    @property
    def passed(self) -> bool:
        if self.op not in OPS:
            raise ConfigError(f"claim {self.id}: op {self.op!r} not in {list(OPS)}")
        return bool(np.isfinite(self.value) and OPS[self.op](self.value, self.threshold))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["passed"] = self.passed
        d["status"] = ("PASS" if self.passed else "FAIL") if self.gating else "REPORT"
        return d


@dataclasses.dataclass
class TableResult:
    """What a table's ``run`` returns."""

    table: str
    title: str
    paper: dict[str, Any]
    ours: dict[str, Any]
    claims: list[Claim]
    deviations: list[str] = dataclasses.field(default_factory=list)
    analysis: str = ""
    quick: bool = False
    rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.claims if c.gating)


def repo_root() -> pathlib.Path:
    """The directory above the package: the checkout when jaxcomp runs from one."""
    return pathlib.Path(__file__).resolve().parents[2]


def checkout_root() -> pathlib.Path | None:
    """The git checkout jaxcomp runs from, or ``None`` for an installed package."""
    root = repo_root()
    return root if (root / ".git").exists() and (root / "pyproject.toml").exists() else None


def default_results_dir(quick: bool) -> pathlib.Path:
    """Where ``jaxcomp reproduce`` writes without ``--out``: a full run into the
    checkout's tracked ``docs/results``; a quick run (a smoke test), or any run of an
    installed package, under ``runs/reproduce`` in the working directory."""
    root = checkout_root()
    if quick or root is None:
        return pathlib.Path("runs") / ("reproduce_quick" if quick else "reproduce")
    return root / "docs" / "results"


def git_commit() -> str:
    root = checkout_root()
    if root is None:
        from jaxcomp import __version__

        return f"jaxcomp {__version__} (installed, no checkout)"
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10)
        # the results directory is left out: a sequence of tables (``reproduce all``) writes
        # there, and those files would mark every table after the first as dirty
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ".", ":(exclude)docs/results"],
                               cwd=root, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except Exception:
        return "unknown"


def machine() -> str:
    import jax

    return (f"{platform.machine()} {os.cpu_count()} cores, {platform.system()}, "
            f"jax {jax.__version__} on {jax.devices()[0].platform}")


def tables() -> dict[str, str]:
    """``{"T1": module name, ...}`` for the table modules in :mod:`jaxcomp.lab.tables`."""
    from jaxcomp.lab.tables import table_modules

    return table_modules()


def load_table(table: str):
    """Import the table module for ``T<n>``."""
    found = tables()
    key = str(table).upper()
    if key not in found:
        raise ConfigError(f"unknown table {table!r}; available: {sorted(found)}"
                          f"{suggest(key, found)}")
    return importlib.import_module(found[key])


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict) and "mean" in v:
        return f"{v['mean']:.4g} ± {v.get('std', 0.0):.2g}"
    return str(v)


def write_results(result: TableResult, out_dir: str | os.PathLike | None = None,
                  command: str = "", commit: str | None = None
                  ) -> tuple[pathlib.Path, pathlib.Path]:
    """Write ``T<n>.md`` and ``T<n>.json`` (``docs/results`` by default).

    ``commit`` is the code's commit when the run *started* (default: now); pass the
    one read before running, so results written into a tracked folder by an earlier
    table, or a commit made while a long run goes on, do not misstate the provenance.
    """
    out = pathlib.Path(out_dir) if out_dir else default_results_dir(result.quick)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"command": command or f"jaxcomp reproduce {result.table}"
            + (" --quick" if result.quick else ""),
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": commit or git_commit(), "machine": machine(), "quick": result.quick}
    data = {"table": result.table, "title": result.title, **meta, "paper": result.paper,
            "ours": result.ours, "claims": [c.to_dict() for c in result.claims],
            "deviations": result.deviations, "analysis": result.analysis,
            "rows": result.rows, "passed": result.passed}
    stem = result.table + ("_quick" if result.quick else "")
    jpath, mpath = out / f"{stem}.json", out / f"{stem}.md"
    tmp = jpath.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=float))
    tmp.replace(jpath)
    lines = [f"# {result.table} — {result.title}", "",
             f"Command: `{meta['command']}`  ", f"Date: {meta['date']}  ",
             f"Commit: `{meta['commit']}`  ", f"Machine: {meta['machine']}", ""]
    if result.quick:
        lines += ["**Quick mode** (smoke test: fewer epochs/data; claims are not meaningful).",
                  ""]
    lines += ["## Claims", "", "| claim | ours | threshold | status |", "|---|---|---|---|"]
    for c in result.claims:
        d = c.to_dict()
        lines.append(f"| {c.id}: {c.text} | {c.value:.4g} | {c.op} {c.threshold:g} | "
                     f"{d['status']} |")
    lines += ["", "## Paper vs ours", "", "| quantity | paper | ours |", "|---|---|---|"]
    for k in sorted(set(result.paper) | set(result.ours)):
        lines.append(f"| {k} | {_fmt(result.paper.get(k, '—'))} | "
                     f"{_fmt(result.ours.get(k, '—'))} |")
    if result.rows:
        keys = list(result.rows[0])
        lines += ["", "## Runs", "", "| " + " | ".join(keys) + " |",
                  "|" + "---|" * len(keys)]
        for r in result.rows:
            lines.append("| " + " | ".join(_fmt(r.get(k, "")) for k in keys) + " |")
    if result.deviations:
        lines += ["", "## Deviations from the paper's recipe", ""]
        lines += [f"- {d}" for d in result.deviations]
    if result.analysis:
        lines += ["", "## Analysis", "", result.analysis]
    tmp = mpath.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(mpath)
    return mpath, jpath


def write_index(out_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """Write ``README.md`` beside the results: one line per table from its JSON."""
    out = pathlib.Path(out_dir) if out_dir else default_results_dir(quick=False)
    lines = ["# Paper tables: results", "",
             "Written by `jaxcomp reproduce`. Each table checks relative claims against a "
             "baseline trained in the same run; each file states its claims, the paper's "
             "numbers and every deviation from the paper's recipe.",
             "", "| table | title | claims passed | status | commit | date |",
             "|---|---|---|---|---|---|"]
    for path in sorted(out.glob("T*.json"), key=lambda p: (len(p.stem), p.stem)):
        d = json.loads(path.read_text())
        gating = [c for c in d["claims"] if c.get("status") != "REPORT"]
        n_ok = sum(c["passed"] for c in gating)
        mode = " (quick)" if d.get("quick") else ""
        lines.append(f"| [{d['table']}]({path.stem}.md){mode} | {d['title']} | "
                     f"{n_ok}/{len(gating)} | {'PASS' if d['passed'] else 'FAIL'} | "
                     f"`{d['commit'][:10]}` | {d['date']} |")
    index = out / "README.md"
    index.write_text("\n".join(lines) + "\n")
    return index


def load_table_config(name: str, quick: bool = False):
    """The ``get_config()`` of table config ``name`` (``"t1_han"``; a legacy
    ``"configs/t1_han.py"`` names the same one), from :mod:`jaxcomp.lab.tables.configs`.

    In quick mode the config's ``quick`` block (smaller epochs, data, seeds) is
    copied over the top-level keys.
    """
    stem = pathlib.PurePosixPath(name).stem
    cfg = importlib.import_module(f"jaxcomp.lab.tables.configs.{stem}").get_config()
    if quick:
        cfg.unlock()
        for k, v in cfg.quick.items():
            cfg[k] = v
        cfg.lock()
    return cfg


def table_logger(table: str):
    """A ``log(msg)`` that prints ``[T<n> HH:MM:SS] msg`` to stderr (stdout stays clean)."""
    import sys
    import time

    def log(msg: str) -> None:
        print(f"[{table} {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    return log


def claims_summary(claims: list) -> str:
    """"All claims pass." or which fail, with the measured value and the fixed threshold.

    Example:
        >>> claims_summary([Claim("a", "x", value=0.5, threshold=1.0, op=">=")])
        'Failing: a (0.50 vs >= 1.0). Reported as measured; thresholds unchanged.'
    """
    failing = [c for c in claims if not c.passed]
    if not failing:
        return "All claims pass."
    return ("Failing: " + "; ".join(f"{c.id} ({c.value:.2f} vs {c.op} {c.threshold})"
                                    for c in failing)
            + ". Reported as measured; thresholds unchanged.")


class TableKit:
    """What every table module starts with: its config loader, its stderr logger
    and its Fashion-MNIST subset, for table ``table`` with config ``config``.

    Example:
        >>> kit = TableKit("T3", "t3_gradual")
        >>> kit.load_config(quick=True).limit_train > 0
        True
    """

    def __init__(self, table: str, config: str):
        self.table, self.config = table, config
        self.log = table_logger(table)

    def load_config(self, quick: bool = False):
        """The table's config (its ``quick`` block on top in quick mode)."""
        return load_table_config(self.config, quick)

    def data(self, cfg):
        """Fashion-MNIST cut to the config's ``limit_train`` / ``limit_test``."""
        return fashion_mnist_subset(cfg.limit_train, cfg.limit_test)


def accuracy_on_test(model, params, model_state, ds) -> float:
    """Test accuracy of ``model`` with ``params`` on ``ds``'s test split."""
    from jaxcomp.train.step import evaluate

    return evaluate(model, params, model_state, ds.x_test, ds.y_test)["accuracy"]


def limit_dataset(ds, limit_train: int = 0, limit_test: int = 0):
    """``ds`` truncated to its first ``limit_*`` examples (0 = all)."""
    if limit_train:
        ds = dataclasses.replace(ds, x_train=ds.x_train[:limit_train],
                                 y_train=ds.y_train[:limit_train])
    if limit_test:
        ds = dataclasses.replace(ds, x_test=ds.x_test[:limit_test], y_test=ds.y_test[:limit_test])
    return ds


def fashion_mnist_subset(limit_train: int = 0, limit_test: int = 0):
    """Fashion-MNIST, truncated to the first ``limit_*`` examples (0 = all)."""
    from jaxcomp.data import fashion_mnist

    return limit_dataset(fashion_mnist(), limit_train, limit_test)


def mean_std(values: list[float]) -> dict[str, float]:
    """``{"mean", "std", "n"}`` of a list of numbers (sample std, 0 for one value)."""
    a = np.asarray(values, np.float64)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
            "n": len(a)}
