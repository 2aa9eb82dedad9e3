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
    assert any(r["stage"] == "init comparison" for r in res.rows)
