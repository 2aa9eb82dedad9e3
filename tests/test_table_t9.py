"""T9 quick mode runs end to end and returns a well-formed result (claims are not
asserted to pass: quick mode is a smoke test)."""

from __future__ import annotations

import math

from tests.quick_tables import check_result, check_written


def check_quick(result, tmp_path):
    """Checks of the quick run's result; called by tests/test_table_quick_all.py, which runs
    ``jaxcomp reproduce all --quick`` once for all tables."""
    module = check_result(result, "T9", ["a1", "a2", "b", "c", "d", "e", "f"])
    methods = [r["method"] for r in result.rows]
    assert len(methods) == len(module.ROWS) and methods[0] == "fp32"
    # every row is finite and better than chance (8 bits per byte)
    for r in result.rows:
        v = r["valid_bpb"]["mean"]
        assert math.isfinite(v) and 0.0 < v < 8.0, r
    ours = result.ours
    assert ours["base_valid_bpb"] < 8.0 and ours["unigram_bpb"] < 8.0
    assert ours["base_train_tokens"] > 0
    # the rotated float model is the same function as the float model
    assert abs(ours["rotated_fp32_bpb"] - ours["fp32_bpb"]["mean"]) < 1e-3
    assert ours["act_kurtosis (median layer)"] > 0
    c = {x.id: x.value for x in result.claims}
    by = {r["method"]: r["valid_bpb"]["mean"] for r in result.rows}
    assert math.isclose(c["f"], by["KV cache int8 (fake-quant in blocks)"] - by["fp32"],
                        abs_tol=1e-12)
    check_written(result, tmp_path)
