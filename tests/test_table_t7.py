"""T7 quick mode runs end to end and returns a well-formed result (claims are
not asserted to pass: quick mode is a smoke test)."""

from __future__ import annotations

import math

from tests.quick_tables import check_result, check_written


def check_quick(result, tmp_path):
    """Checks of the quick run's result; called by tests/test_table_quick_all.py, which runs
    ``jaxcomp reproduce all --quick`` once for all tables."""
    check_result(result, "T7", ["a", "b", "c1", "c2", "c3", "d", "e", "f1", "f2"])
    ours = result.ours
    for k, v in ours.items():
        if k.endswith("_acc") or k.startswith("int_path_agreement"):
            assert 0.0 <= v <= 1.0, k
    assert {r["model"] for r in result.rows} == {"lenet300", "rescnn"}
    # trained models (and their 8-bit / per-channel quantizations) beat chance (0.1) by a
    # wide margin (quick: LeNet-300-100 0.66-0.70, ResCNN 0.44); 4-bit ResCNN rows may
    # collapse for a real reason and are only range-checked
    for r in result.rows:
        lo = 0.0 if "W4A8" in r["method"] else (0.5 if r["model"] == "lenet300" else 0.25)
        assert lo < r["test_acc"] <= 1.0, r
    # equal epochs: each QAT arm is compared with fp32 fine-tuned the same extra epochs
    by = {r["method"]: r for r in result.rows}
    qat = by["W4 QAT per-channel (+1)"]
    assert qat["train_epochs"] == by["fp32 fine-tuned +1 epochs"]["train_epochs"] == \
        by["W4 PTQ per-channel of fp32 +1"]["train_epochs"] == by["fp32"]["train_epochs"] + 1
    c = {x.id: x.value for x in result.claims}
    assert math.isclose(c["c2"], 100 * (ours["lenet300_w4_qat_acc"]
                                        - ours["lenet300_w4_ptq_per_channel_of_ft1_acc"]))
    assert math.isclose(c["c3"], 100 * (ours["lenet300_fp32_ft1_acc"]
                                        - ours["lenet300_w4_qat_acc"]))
    assert math.isclose(c["e"], 100 * (ours["lenet300_w8a8_qat_acc"]
                                       - ours["lenet300_w8a8_ptq_of_ft1_acc"]))
    assert ours["w4_per_channel_minus_per_tensor_paired_se_pt"] > 0
    check_written(result, tmp_path)
