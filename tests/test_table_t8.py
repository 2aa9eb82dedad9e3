"""T8 quick mode runs end to end and returns a well-formed result (claims are not
asserted to pass: quick mode is a smoke test)."""

from __future__ import annotations

import math

from tests.quick_tables import check_result, check_written


def check_quick(result, tmp_path):
    """Checks of the quick run's result; called by tests/test_table_quick_all.py, which runs
    ``jaxcomp reproduce all --quick`` once for all tables."""
    check_result(result, "T8")
    assert [(c.id, c.gating) for c in result.claims] == [
        ("a1", True), ("a2", True), ("b1", True), ("b2", True), ("b3", True), ("c", True),
        ("d1", True), ("d2", True), ("e", True), ("e_svd", False), ("e_tucker2", False),
        ("e_cp", False)]
    ours = result.ours
    for k, v in ours.items():
        if k.endswith("_ft") or k.endswith("_acc") or k.endswith("_mean"):
            assert 0.0 <= v <= 1.0, k
    # trained and fine-tuned models beat chance (0.1) by a wide margin (quick: 0.57-0.71)
    for r in result.rows:
        if r["acc_after_ft"] is not None:
            assert 0.4 < r["acc_after_ft"] <= 1.0, r
    # the dense baselines get the same fine-tuning epochs; drops after are against them
    c = {x.id: x.value for x in result.claims}
    assert math.isclose(c["a2"], 100 * (ours["lenet300_acc_after_ft"]
                                        - ours["svd_acc_after_ft"]))
    assert math.isclose(c["d1"], 100 * (ours["lenet5_acc_after_ft"] - ours["l1_acc_after_ft"]))
    # (e) speed-up beside FLOP reduction for every decomposed/pruned model
    l1 = next(r for r in result.rows if r["method"].startswith("L1 filters"))
    assert math.isclose(c["e"], l1["speedup"] / l1["flop_reduction"])
    assert ours["forward_batch"] == 256 and l1["forward_cpu_ms"] > 0
    # the factorized layers compute the reconstructed dense model
    assert result.ours["factorized_vs_reconstructed_max_abs_diff"] < 1e-3
    timed = [r for r in result.rows if r.get("forward_ms") is not None]
    assert len(timed) == 6 and all(r["forward_ms"] > 0 and r["flops"] > 0 for r in timed)
    check_written(result, tmp_path)
