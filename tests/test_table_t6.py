"""T6 quick mode runs end to end and returns a well-formed result (claims are
not asserted to pass: quick mode is a smoke test)."""

from __future__ import annotations

import math

from jaxcomp.experiment.paper_table import Claim, TableResult, load_table, write_results
from tests.quick_tables import reproduce_quick


def test_t6_quick_result_structure(tmp_path, monkeypatch):
    module = load_table("T6")
    assert module.TABLE == "T6" and module.TITLE
    result = reproduce_quick("T6", tmp_path / "cli", monkeypatch)
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
