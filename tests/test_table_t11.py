"""T11 quick mode runs end to end and returns a well-formed result (claims are not
asserted to pass: quick mode is a smoke test)."""

from __future__ import annotations

import math

from tests.quick_tables import check_result, check_written


def check_quick(result, tmp_path):
    """Checks of the quick run's result; called by tests/test_table_quick_all.py, which runs
    ``jaxcomp reproduce all --quick`` once for all tables."""
    check_result(result, "T11", ["a", "b", "c", "d", "d_vs_fp32_lora"],
                 undefined_ok=["d"])   # d is NaN (failing) when int4 RTN lost nothing
    assert [c.gating for c in result.claims] == [True] * 4 + [False]
    by = {r["method"]: r for r in result.rows}
    assert list(by)[0] == "base" and len(by) == 10
    for r in result.rows:
        assert math.isfinite(r["valid_bpb"]) and 0.0 < r["valid_bpb"] < 8.0, r
    ours = result.ours
    # both pruned models are real, smaller modules of (about) the same size
    assert ours["params_width"] < ours["params_base"] and ours["params_depth"] < \
        ours["params_base"]
    assert abs(ours["params_width_over_depth"] - 1.0) < 0.02
    assert ours["width_config"]["width"] == 48 and ours["depth_config"]["num_layers"] == 1
    assert by["width + distillation"]["params"] == ours["params_width"]
    c = {x.id: x.value for x in result.claims}
    assert math.isclose(c["a"], by["width + distillation"]["valid_bpb"]
                        - by["width architecture from scratch"]["valid_bpb"], abs_tol=1e-12)
    lost = by["int4 RTN base"]["valid_bpb"] - by["base"]["valid_bpb"]
    gained = by["int4 RTN base"]["valid_bpb"] - by["int4 base + LoRA (QLoRA)"]["valid_bpb"]
    if lost >= 1e-4:
        assert math.isclose(c["d"], gained / lost)
    else:
        assert math.isnan(c["d"]) and not result.claims[3].passed
    check_written(result, tmp_path)
