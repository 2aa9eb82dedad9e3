"""T6 quick mode runs end to end and returns a well-formed result (claims are
not asserted to pass: quick mode is a smoke test)."""

from __future__ import annotations

import math

from jaxcomp.experiment.paper_table import Claim, TableResult, load_table, write_results


def check_quick(result, tmp_path):
    """Checks of the quick run's result; called by tests/test_table_quick_all.py, which runs
    ``jaxcomp reproduce all --quick`` once for all tables."""
    module = load_table("T6")
    assert module.TABLE == "T6" and module.TITLE
    assert isinstance(result, TableResult) and result.quick and result.table == "T6"
    assert [c.id for c in result.claims] == ["a", "b1", "b2", "c"]
    assert all(isinstance(c, Claim) and math.isfinite(c.value) for c in result.claims)
    assert result.claims[-1].gating is False
    ours = result.ours
    assert 0.0 <= ours["teacher_test_acc"] <= 1.0
    assert set(ours["kd_student_test_acc"]) == {"mean", "std"}
    assert ours["tiny_best_T"] in (2.5, 20.0)
    runs = {r["run"] for r in result.rows}
    assert runs == {"teacher", "student plain", "student KD", "tiny plain", "tiny KD"}
    md, js = write_results(result, tmp_path)
    assert md.name == "T6_quick.md" and "Claims" in md.read_text() and js.exists()
