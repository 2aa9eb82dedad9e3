"""T5 quick mode runs end to end and returns a well-formed table (claims not asserted)."""

from jaxcomp.experiment.paper_table import TableResult, load_table


def check_quick(res, tmp_path):
    """Checks of the quick run's result; called by tests/test_table_quick_all.py, which runs
    ``jaxcomp reproduce all --quick`` once for all tables."""
    assert load_table("T5").TABLE == "T5"
    assert isinstance(res, TableResult) and res.table == "T5" and res.quick
    assert [c.id for c in res.claims] == ["a", "b", "b95", "b98"]
    for k in ("dense_acc", "snip_95%_acc", "random_98%_acc"):
        assert 0.0 <= res.ours[k]["mean"] <= 1.0
    sp = sorted({r["sparsity"] for r in res.rows if r["run"] != "dense"})
    assert sp == [0.95, 0.98]
