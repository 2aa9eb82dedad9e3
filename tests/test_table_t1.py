"""T1 quick mode runs end to end and returns a well-formed table (claims not asserted)."""


from jaxcomp.experiment.paper_table import TableResult, load_table


def _mod():
    return load_table("T1")


def test_scaled_keep_hits_overall_fraction():
    mod = _mod()
    sizes = {"a": 1000, "b": 100, "c": 10}
    k = mod.scaled_keep({"a": 0.1, "b": 0.2, "c": 0.6}, sizes, 0.25)
    assert abs(sum(k[p] * sizes[p] for p in k) / 1110 - 0.25) < 1e-6
    assert k["c"] == 1.0  # capped


def check_quick(res, tmp_path):
    """Checks of the quick run's result; called by tests/test_table_quick_all.py, which runs
    ``jaxcomp reproduce all --quick`` once for all tables."""
    assert isinstance(res, TableResult) and res.table == "T1" and res.quick
    assert [c.id for c in res.claims] == ["a12", "a5", "b", "c"]
    assert 11.0 < res.ours["compression_12x"] < 13.0
    assert 4.5 < res.ours["compression_5x"] < 5.5
    # trained models beat chance (0.1 for 10 classes) by a wide margin even in quick mode
    # (a quick run reached about 0.75 dense, 0.56 at 12x)
    for k in ("dense_acc", "iterative_12x_acc", "iterative_5x_acc"):
        assert 0.3 < res.ours[k]["mean"] <= 1.0, (k, res.ours[k])
    assert 0.0 <= res.ours["no_retrain_12x_acc"]["mean"] <= 1.0
