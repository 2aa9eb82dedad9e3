"""Reports: tables hold the right means/stds, CSV matches, Pareto front, plots are PNGs."""

import csv
import json

import numpy as np
import pytest

from jaxcomp.cli import main
from jaxcomp.core.errors import ConfigError
from jaxcomp.sweep.report import aggregate, pareto_front, write_report
from jaxcomp.sweep.store import ResultStore
from jaxcomp.sweep.tables import fmt_stat


def _cells(md, *cols):
    """The stripped cells of ``cols`` in each data row of the markdown table in ``md``."""
    lines = [[c.strip() for c in line.strip()[1:-1].split("|")]
             for line in md.splitlines() if line.startswith("|")]
    idx = [lines[0].index(c) for c in cols]
    return [[row[i] for i in idx] for row in lines[2:]]

SPARSITY = [0.0, 0.5, 0.9]
ACC = {0.0: [0.90, 0.92, 0.91], 0.5: [0.89, 0.91, 0.93], 0.9: [0.80, 0.84, 0.85]}


def _make_sweep(d, with_diverged=True):
    s = ResultStore(d)
    s.claim("h", {"config_path": "configs/x.py", "swept_keys": ["prune.sparsity", "seed"]})
    for sp in SPARSITY:
        for seed, acc in enumerate(ACC[sp]):
            nz = int(1000 * (1 - sp))
            s.append({"key": f"{sp}-{seed}", "status": "ok", "seed": seed,
                      "setting": {"prune.sparsity": sp, "seed": seed},
                      "config": {"seed": seed, "prune": {"sparsity": sp}},
                      "metrics": {"test_accuracy": acc, "test_nll": 1 - acc,
                                  "diverged": False},
                      "ledger": {"params": 1000, "nonzeros": nz, "bytes": 4 * nz,
                                 "flops": 2000.0}})
    if with_diverged:
        s.append({"key": "0.9-9", "status": "diverged", "seed": 9,
                  "setting": {"prune.sparsity": 0.9, "seed": 9},
                  "config": {"seed": 9, "prune": {"sparsity": 0.9}},
                  "metrics": {"diverged": True, "diverged_step": 3, "train_loss": None},
                  "ledger": {}})


def test_report_tables_hold_means_and_stds(tmp_path):
    _make_sweep(tmp_path)
    out = write_report(tmp_path)
    assert out["group_by"] == ["prune.sparsity"]
    md = (tmp_path / "report.md").read_text()
    cells = _cells(md, "prune.sparsity", "n", "test_accuracy", "pareto")
    for sp, row in zip(SPARSITY, cells, strict=True):
        a = np.array(ACC[sp])
        assert row[:3] == [f"{sp:g}", str(4 if sp == 0.9 else 3),
                           fmt_stat({"mean": a.mean(), "std": a.std(ddof=1), "n": 3})]
    rows = list(csv.DictReader(open(tmp_path / "report.csv")))
    assert [float(r["prune.sparsity"]) for r in rows] == SPARSITY
    for r in rows:
        a = np.array(ACC[float(r["prune.sparsity"])])
        assert float(r["test_accuracy_mean"]) == pytest.approx(a.mean())
        assert float(r["test_accuracy_std"]) == pytest.approx(a.std(ddof=1))
        assert float(r["nonzeros_mean"]) == int(1000 * (1 - float(r["prune.sparsity"])))
    assert [int(r["diverged"]) for r in rows] == [0, 0, 1]
    # sparsity 0.5 has the same mean accuracy as dense at half the bytes: dense is dominated
    assert [row[-1] == "*" for row in cells] == [False, True, True]
    for f in out["files"]:
        if f.endswith(".png"):
            assert open(f, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    names = {f.rsplit("/", 1)[-1] for f in out["files"]}
    # older ledgers: stored_bytes falls back to bytes; one dense FLOP count is no plot
    assert names == {"report.md", "report.csv", "test_accuracy_vs_stored_bytes.png",
                     "test_accuracy_vs_nonzeros.png", "test_accuracy_vs_prune.sparsity.png"}


def test_group_by_seed_and_none(tmp_path, capsys):
    _make_sweep(tmp_path, with_diverged=False)
    assert main(["report", str(tmp_path), "--group-by", "seed", "--no-plots"]) == 0
    rows = _cells(capsys.readouterr().out, "seed", "n", "test_accuracy")
    for seed in range(3):
        a = np.array([ACC[sp][seed] for sp in SPARSITY])
        assert rows[seed][:3] == [str(seed), "3", f"{a.mean():.3f} ± {a.std(ddof=1):.3f}"]
    assert main(["report", str(tmp_path), "--group-by", "none", "--no-plots"]) == 0
    allacc = np.concatenate([ACC[s] for s in SPARSITY])
    (row,) = _cells(capsys.readouterr().out, "n", "test_accuracy")
    assert row == ["9", f"{allacc.mean():.3f} ± {allacc.std(ddof=1):.3f}"]


def test_bad_group_by_and_metric(tmp_path, capsys):
    _make_sweep(tmp_path)
    assert main(["report", str(tmp_path), "--group-by", "prune.sparsty"]) == 2
    assert "did you mean 'prune.sparsity'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="test_acuracy"):
        write_report(tmp_path, metric="test_acuracy")


def test_pareto_front_against_brute_force():
    rng = np.random.default_rng(0)
    s, a = rng.integers(0, 10, 40).astype(float), rng.random(40)
    front = pareto_front(s, a)
    for i in range(40):
        dominated = any(s[j] <= s[i] and a[j] >= a[i] and (s[j] < s[i] or a[j] > a[i])
                        for j in range(40))
        assert front[i] == (not dominated)
    assert pareto_front([1.0, float("nan")], [0.5, 0.9]) == [True, False]


def test_aggregate_excludes_diverged_from_means():
    rows = [{"k": 1, "status": "ok", "m": 1.0}, {"k": 1, "status": "diverged", "m": None},
            {"k": 1, "status": "ok", "m": 3.0}]
    (g,) = aggregate(rows, ["k"], ["m"])
    assert (g["n"], g["diverged"], g["m"]["mean"], g["m"]["n"]) == (3, 1, 2.0, 2)
    assert g["m"]["std"] == pytest.approx(np.std([1.0, 3.0], ddof=1))


def test_report_skips_error_records(tmp_path):
    _make_sweep(tmp_path, with_diverged=False)
    ResultStore(tmp_path).append({"key": "bad", "status": "error", "error": "boom"})
    out = write_report(tmp_path, plots=False)
    assert sum(g["n"] for g in out["table"]) == 9
    assert json.loads((tmp_path / "results.jsonl").read_text().splitlines()[-1])["key"] == "bad"
