"""T5 quick mode runs end to end and returns a well-formed table (claims not asserted)."""

from jaxcomp.experiment.paper_table import TableResult, load_table


def check_quick(res, tmp_path):
    """Checks of the quick run's result; called by tests/test_table_quick_all.py, which runs
    ``jaxcomp reproduce all --quick`` once for all tables."""
    assert load_table("T5").TABLE == "T5"
    assert isinstance(res, TableResult) and res.table == "T5" and res.quick
    # (b) is gated at 95% only; 98% is a reported row
    assert [(c.id, c.gating) for c in res.claims] == [("a", True), ("b", True), ("b98", False)]
    o = res.ours
    b = res.claims[1]
    assert "95%" in b.text and "98%" not in b.text and b.threshold == 1.0
    assert abs(b.value - 100 * (o["snip_95%_acc"]["mean"] - o["random_95%_acc"]["mean"])) < 1e-9
    # trained models beat chance (0.1) (quick: dense 0.75, SNIP 95% 0.54, random 95% 0.36,
    # SNIP 98% 0.40); uniform random at 98% keeps 20 of the output layer's 1000 weights and
    # is at chance after the quick run's 2 epochs, so only its range is checked
    for k, lo in (("dense_acc", 0.5), ("snip_95%_acc", 0.3), ("random_95%_acc", 0.2),
                  ("snip_98%_acc", 0.2)):
        assert lo < o[k]["mean"] <= 1.0, (k, o[k])
    assert 0.0 <= o["random_98%_acc"]["mean"] <= 1.0
    sp = sorted({r["sparsity"] for r in res.rows if r["run"] != "dense"})
    assert sp == [0.95, 0.98]
