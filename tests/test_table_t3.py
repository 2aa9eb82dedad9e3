"""T3 quick mode runs end to end and returns a well-formed table (claims not asserted)."""


from jaxcomp.experiment.paper_table import TableResult, load_table


def check_quick(res, tmp_path):
    """Checks of the quick run's result; called by tests/test_table_quick_all.py, which runs
    ``jaxcomp reproduce all --quick`` once for all tables."""
    mod = load_table("T3")
    assert isinstance(res, TableResult) and res.table == "T3" and res.quick
    assert [c.id for c in res.claims] == ["a", "b", "c"]
    # trained models beat chance (0.1) by a wide margin (quick: about 0.75 dense, 0.52+ sparse)
    for k in ("dense_acc", "small_mlp_acc", "gradual90_dt5_acc", "gradual90_dt10_acc"):
        assert 0.3 < res.ours[k]["mean"] <= 1.0, (k, res.ours[k])
    assert all(abs(r["sparsity"] - 0.9) < 1e-3 for r in res.rows if "gradual" in r["run"])
    assert mod.small_widths(27030)[0] > 0
