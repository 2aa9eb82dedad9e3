"""T6 quick mode runs end to end and returns a well-formed result (claims are
not asserted to pass: quick mode is a smoke test)."""

from __future__ import annotations

from jaxcomp.experiment.paper_table import load_table
from tests.quick_tables import check_result, check_written


def test_title_names_the_teacher_the_config_uses():
    module = load_table("T6")
    cfg = module.load_config()
    assert cfg.teacher.model == "lenet5_caffe"
    assert "LeNet-5 (Caffe variant) CNN teacher" in module.title(cfg.teacher) == module.TITLE
    tc = cfg.teacher.copy_and_resolve_references()
    tc.model = "mlp"
    assert "2×1200 MLP teacher" in module.title(tc)


def check_quick(result, tmp_path):
    """Checks of the quick run's result; called by tests/test_table_quick_all.py, which runs
    ``jaxcomp reproduce all --quick`` once for all tables."""
    check_result(result, "T6", ["a", "b1", "b2", "c"])
    assert result.claims[-1].gating is False
    ours = result.ours
    # the title (and so the results file's first line) names the CNN teacher
    assert "CNN teacher" in result.title and result.analysis.startswith("Teacher: LeNet-5")
    # (c) reports the measured best T
    assert result.claims[-1].value == ours["tiny_best_T"] in (2.5, 20.0)
    assert ours["tiny_kd_test_acc_by_T"][str(ours["tiny_best_T"])] == max(
        ours["tiny_kd_test_acc_by_T"].values())
    assert set(ours["kd_student_test_acc"]) == {"mean", "std"}
    # every trained model beats chance (0.1) by a wide margin (quick: teacher 0.70, students
    # 0.63-0.76, 30-30 students 0.58-0.64)
    assert all(0.4 < r["test_acc"] <= 1.0 for r in result.rows), result.rows
    runs = {r["run"] for r in result.rows}
    assert runs == {"teacher", "student plain", "student KD", "tiny plain", "tiny KD"}
    check_written(result, tmp_path)
