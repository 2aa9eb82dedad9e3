"""T9 quick mode runs end to end and returns a well-formed result (claims are not
asserted to pass: quick mode is a smoke test)."""

from __future__ import annotations

import math

from jaxcomp.experiment.paper_table import Claim, TableResult, load_table, write_results


def check_quick(result, tmp_path):
    """Checks of the quick run's result; called by tests/test_table_quick_all.py, which runs
    ``jaxcomp reproduce all --quick`` once for all tables."""
    module = load_table("T9")
    assert module.TABLE == "T9" and module.TITLE
    assert isinstance(result, TableResult) and result.quick and result.table == "T9"
    assert [c.id for c in result.claims] == ["a1", "a2", "b", "c", "d", "e", "f"]
    assert all(isinstance(c, Claim) and math.isfinite(c.value) for c in result.claims)
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
    md, js = write_results(result, tmp_path)
    assert md.name == "T9_quick.md" and "Claims" in md.read_text() and js.exists()
