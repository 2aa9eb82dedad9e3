"""T7 quick mode runs end to end and returns a well-formed result (claims are
not asserted to pass: quick mode is a smoke test)."""

from __future__ import annotations

import math

from jaxcomp.experiment.paper_table import Claim, TableResult, load_table, write_results


def check_quick(result, tmp_path):
    """Checks of the quick run's result; called by tests/test_table_quick_all.py, which runs
    ``jaxcomp reproduce all --quick`` once for all tables."""
    module = load_table("T7")
    assert module.TABLE == "T7" and module.TITLE
    assert isinstance(result, TableResult) and result.quick and result.table == "T7"
    assert [c.id for c in result.claims] == ["a", "b", "c1", "c2", "c3", "d", "e", "f1", "f2"]
    assert all(isinstance(c, Claim) and math.isfinite(c.value) for c in result.claims)
    for k, v in result.ours.items():
        if k.endswith("_acc") or k.startswith("int_path_agreement"):
            assert 0.0 <= v <= 1.0, k
    assert {r["model"] for r in result.rows} == {"lenet300", "rescnn"}
    md, js = write_results(result, tmp_path)
    assert md.name == "T7_quick.md" and "Claims" in md.read_text() and js.exists()
