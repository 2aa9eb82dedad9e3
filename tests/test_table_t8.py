"""T8 quick mode runs end to end and returns a well-formed result (claims are not
asserted to pass: quick mode is a smoke test)."""

from __future__ import annotations

import math

from jaxcomp.experiment.paper_table import Claim, TableResult, load_table, write_results


def check_quick(result, tmp_path):
    """Checks of the quick run's result; called by tests/test_table_quick_all.py, which runs
    ``jaxcomp reproduce all --quick`` once for all tables."""
    module = load_table("T8")
    assert module.TABLE == "T8" and module.TITLE
    assert isinstance(result, TableResult) and result.quick and result.table == "T8"
    assert [c.id for c in result.claims] == ["a1", "a2", "b1", "b2", "b3", "c", "d1", "d2"]
    assert all(isinstance(c, Claim) and math.isfinite(c.value) for c in result.claims)
    for k, v in result.ours.items():
        if k.endswith("_ft") or k.endswith("_acc") or k.endswith("_mean"):
            assert 0.0 <= v <= 1.0, k
    # the factorized layers compute the reconstructed dense model
    assert result.ours["factorized_vs_reconstructed_max_abs_diff"] < 1e-3
    timed = [r for r in result.rows if r.get("forward_ms") is not None]
    assert len(timed) == 6 and all(r["forward_ms"] > 0 and r["flops"] > 0 for r in timed)
    md, js = write_results(result, tmp_path)
    assert md.name == "T8_quick.md" and "Claims" in md.read_text() and js.exists()
