"""T2's quick mode runs end to end and returns a well-formed result (claims not asserted)."""

import math

from jaxcomp.experiment.paper_table import TableResult, load_table


def check_quick(res, tmp_path):
    """Checks of the quick run's result; called by tests/test_table_quick_all.py, which runs
    ``jaxcomp reproduce all --quick`` once for all tables."""
    mod = load_table("T2")
    assert mod.TABLE == "T2"
    assert isinstance(res, TableResult) and res.quick
    assert {c.id for c in res.claims} >= {"a1", "a2", "b"}
    assert all(math.isfinite(c.value) for c in res.claims)
    o = res.ours
    # Ratios are dense bytes over the encoded bytes, and Huffman never makes it larger.
    assert o["dense_bytes"] == 4 * 266610
    assert math.isclose(o["ratio_huffman_x"], o["dense_bytes"] / o["bytes_huffman"])
    assert o["bytes_huffman"] <= o["bytes_fixed"] < o["dense_bytes"]
    # The decoded model is the fine-tuned shared model.
    assert math.isclose(o["decoded_acc"], o["shared_acc"], abs_tol=1e-9)
    assert 0.0 < o["weights_kept"] < 0.2
    # trained models beat chance (0.1) by a wide margin (quick: about 0.78 dense, 0.57+ after)
    for k in ("dense_acc", "pruned_acc", "shared_acc", "decoded_acc"):
        assert 0.3 < o[k] <= 1.0, (k, o[k])
    assert all(0.3 < r["acc"] <= 1.0 for r in res.rows if r["stage"] == "init comparison")
    # the storage claims are the paper's own figures
    th = {c.id: (c.threshold, c.value, c.gating) for c in res.claims}
    assert th["a1"] == (32.0, o["ratio_prune_quant_x"], True)
    assert th["a2"] == (40.0, o["ratio_huffman_x"], True)
    # noise figures come from the run: a paired test-set SE of linear - random per bit width
    init_claims = [c for c in res.claims if c.id.startswith("c")]
    assert init_claims
    for c in init_claims:
        se = o[f"paired_test_se_linear_minus_random_{c.id[1:]}bit_pt"]
        assert 0.0 < se < 5.0
        if not c.passed:
            assert f"paired test-set SE of the difference {se:.2f} pt" in res.analysis
    assert "~0.1" not in res.analysis
    assert any(r["stage"] == "init comparison" for r in res.rows)
