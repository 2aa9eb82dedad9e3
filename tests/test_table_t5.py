"""T5 quick mode runs end to end and returns a well-formed table (claims not asserted)."""

import importlib.util

from jaxcomp.experiment.paper_table import TableResult, repo_root


def check_quick(res, tmp_path):
    """Checks of the quick run's result; called by tests/test_table_quick_all.py, which runs
    ``jaxcomp reproduce all --quick`` once for all tables."""
    spec = importlib.util.spec_from_file_location("t5", repo_root() / "experiments/t5_snip.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert isinstance(res, TableResult) and res.table == "T5" and res.quick
    assert [c.id for c in res.claims] == ["a", "b", "b95", "b98"]
    for k in ("dense_acc", "snip_95%_acc", "random_98%_acc"):
        assert 0.0 <= res.ours[k]["mean"] <= 1.0
    sp = sorted({r["sparsity"] for r in res.rows if r["run"] != "dense"})
    assert sp == [0.95, 0.98]
