"""T4's quick mode runs end to end and returns a well-formed result (claims not asserted)."""

import math

from jaxcomp.experiment.paper_table import TableResult, load_table


def check_quick(res, tmp_path):
    """Checks of the quick run's result; called by tests/test_table_quick_all.py, which runs
    ``jaxcomp reproduce all --quick`` once for all tables."""
    mod = load_table("T4")
    assert mod.TABLE == "T4"
    assert isinstance(res, TableResult) and res.quick
    assert [c.id for c in res.claims] == ["a", "b", "c"]
    assert all(math.isfinite(c.value) for c in res.claims)
    # quick: 1 seed, dense + 2 IMP rounds + 2 controls at round 2
    assert res.ours["train_runs"] == 5
    tickets = [r for r in res.rows if r["run"] == "ticket"]
    assert [r["round"] for r in tickets] == [1, 2]
    # 20% of each hidden layer's and 10% of the output layer's survivors pruned per round.
    dens = next(v for k, v in res.ours.items() if k.endswith("layer_density"))
    assert math.isclose(dens["Dense_0/kernel"], 0.64, abs_tol=1e-4)
    assert math.isclose(dens["Dense_2/kernel"], 0.81, abs_tol=1e-3)
    # every trained run beats chance (0.1) by a wide margin (quick: 0.67-0.75)
    assert all(0.4 < r["accuracy"] <= 1.0 for r in res.rows), res.rows
