"""``jaxcomp reproduce all --quick`` runs end to end (as CI promises), then each table's
own checks look at its quick result (claims are not asserted: quick runs are smoke
tests)."""

import importlib

from jaxcomp.experiment.paper_table import tables
from tests.quick_tables import reproduce_all_quick


def test_reproduce_all_quick(tmp_path, monkeypatch):
    results = reproduce_all_quick(tmp_path / "results", monkeypatch)
    names = sorted(tables(), key=lambda t: int(t[1:]))
    assert sorted(results, key=lambda t: int(t[1:])) == names and len(names) >= 9
    for name in names:
        checks = importlib.import_module(f"tests.test_table_{name.lower()}")
        checks.check_quick(results[name], tmp_path / name)
