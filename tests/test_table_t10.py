"""T10 quick mode runs end to end and returns a well-formed result (claims are not
asserted to pass: quick mode is a smoke test)."""

from __future__ import annotations

import math

from tests.quick_tables import check_result, check_written


def check_quick(result, tmp_path):
    """Checks of the quick run's result; called by tests/test_table_quick_all.py, which runs
    ``jaxcomp reproduce all --quick`` once for all tables."""
    check_result(result, "T10", ["a1", "a2", "b1", "b2", "c", "d"])
    methods = [r["method"] for r in result.rows]
    assert methods[0] == "dense" and len(methods) == 8
    # every row is finite and better than chance (8 bits per byte)
    for r in result.rows:
        v = r["valid_bpb"]["mean"]
        assert math.isfinite(v) and 0.0 < v < 8.0, r
    ours = result.ours
    assert ours["achieved_sparsity_50"] == 0.5 and ours["achieved_sparsity_2_4"] == 0.5
    assert ours["export_round_trip_exact"] is True
    # 2:4 fp32: half the values + 2 bits per kept value = 0.5 + 1/32 of the dense bytes
    assert math.isclose(ours["sparsegpt_2_4_bytes_vs_dense_fp32"], 0.5 + 1 / 32)
    assert ours["wanda_prune_seconds"] > 0 and ours["sparsegpt_prune_seconds"] > 0
    c = {x.id: x.value for x in result.claims}
    by = {r["method"]: r["valid_bpb"]["mean"] for r in result.rows}
    assert math.isclose(c["c"], by["sparsegpt 50%"] - by["wanda 50%"], abs_tol=1e-12)
    check_written(result, tmp_path)
