"""Every paper table's quick mode runs end to end as ``jaxcomp reproduce T<n> --quick`` (as
CI promises), then the table's own checks look at its quick result (claims are not
asserted: quick runs are smoke tests).

One test per table, so that xdist can spread them over its workers (all of them in one
``reproduce all --quick`` took 320 s on one worker). ``reproduce all`` itself (every table,
in order, one commit, the index, the exit status) is tested with stand-in tables in
test_reproduce_all.py. The tables that train the base GPT (cached on disk under
``runs/gpt_cache`` and shared by them) share an xdist group: they run one after another
on one worker, so the first trains it and the others read it, as in ``reproduce all``,
instead of two workers training and writing the same cache entry at once.
"""

import importlib
import pathlib

import pytest

from jaxcomp.experiment.paper_table import load_table, tables
from tests.quick_tables import reproduce_quick

NAMES = sorted(tables(), key=lambda t: int(t[1:]))


def _uses_base_gpt(name: str) -> bool:
    return "gpt_base" in pathlib.Path(load_table(name).__file__).read_text()


def _case(name: str):
    marks = [pytest.mark.xdist_group("base_gpt")] if _uses_base_gpt(name) else []
    return pytest.param(name, marks=marks, id=name)


def test_every_table_has_a_quick_case_and_checks():
    assert len(NAMES) >= 9
    for name in NAMES:
        assert callable(importlib.import_module(f"tests.test_table_{name.lower()}").check_quick)


@pytest.mark.parametrize("name", [_case(n) for n in NAMES])
def test_reproduce_quick(name, tmp_path, monkeypatch):
    results = reproduce_quick(name, tmp_path / "results", monkeypatch)
    assert list(results) == [name]
    checks = importlib.import_module(f"tests.test_table_{name.lower()}")
    checks.check_quick(results[name], tmp_path / name)
