"""``jaxcomp reproduce all`` runs every table in order, writes each results file and
the index, records the commit read before the first run, and its exit status says
whether a full run's gating claims held (quick runs only need to finish)."""

import json
import types

import pytest

from jaxcomp.cli import main
from jaxcomp.commands import reproduce
from jaxcomp.experiment.paper_table import Claim, TableResult, tables


def _fake_tables(monkeypatch, fail=()):
    ran = []

    def load_table(name):
        def run(quick=False):
            ran.append((name, quick))
            ok = name not in fail
            return TableResult(name, f"title {name}", {}, {"x": 1.0},
                               [Claim("a", "x holds", 1.0 if ok else 0.0, 0.5, ">=")],
                               quick=quick)

        return types.SimpleNamespace(run=run)

    monkeypatch.setattr(reproduce, "load_table", load_table)
    commits = iter(["abc123", "later+dirty", "later+dirty", "later+dirty"] * 10)
    monkeypatch.setattr(reproduce, "git_commit", lambda: next(commits))
    return ran


@pytest.mark.parametrize("quick", [True, False])
def test_all_runs_every_table_and_writes_index(tmp_path, monkeypatch, quick):
    ran = _fake_tables(monkeypatch, fail=("T3",))
    argv = ["reproduce", "all", "--out", str(tmp_path)] + (["--quick"] if quick else [])
    code = main(argv)
    names = sorted(tables(), key=lambda t: int(t[1:]))
    assert ran == [(n, quick) for n in names] and len(names) >= 9
    assert code == (0 if quick else 1)  # a failing claim fails a full run only
    suffix = "_quick" if quick else ""
    for n in names:
        data = json.loads((tmp_path / f"{n}{suffix}.json").read_text())
        assert data["commit"] == "abc123"  # read once, before the runs
        assert data["passed"] is (n != "T3")
    index = (tmp_path / "README.md").read_text()
    assert all(f"[{n}]({n}{suffix}.md)" in index for n in names)
