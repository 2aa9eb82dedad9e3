"""Divergence through the sweep runner: a run whose loss becomes NaN/inf is stopped,
recorded as ``diverged`` with the step, and the sweep goes on to the other runs — on the
one-by-one path and on the vectorized path. A rerun does not retry diverged runs.
"""

from __future__ import annotations

import math

import pytest

from jaxcomp.experiment import base_config
from jaxcomp.experiment.config import apply_overrides
from jaxcomp.sweep.grid import product
from jaxcomp.sweep.runner import SweepRunner

EPOCHS = 3
N_TRAIN = 512  # the synthetic dataset's default train split
BATCH = 64
STEPS = N_TRAIN // BATCH


def _base():
    c = base_config()
    apply_overrides(c, ["data.name=synthetic", "model.name=mlp", f"train.epochs={EPOCHS}",
                        f"train.batch_size={BATCH}", "train.optimizer=sgd"])
    with c.unlocked():
        c.model.features = (16,)
    return c


def _check_diverged(rec):
    m = rec["metrics"]
    assert rec["status"] == "diverged" and m["diverged"] is True
    step = m["diverged_step"]
    # stopped early: in the first epoch, not after all EPOCHS * STEPS steps
    assert isinstance(step, int) and 0 < step <= STEPS, step
    assert "test_accuracy" not in m


def _check_ok(rec):
    m = rec["metrics"]
    assert rec["status"] == "ok" and m["diverged"] is False
    assert math.isfinite(m["train_loss"]) and 0.0 <= m["test_accuracy"] <= 1.0


@pytest.mark.parametrize("vectorize", [False, "auto"], ids=["one_by_one", "vectorized"])
def test_diverged_run_is_recorded_and_sweep_continues(tmp_path, vectorize):
    # the diverging learning rate comes first, so the sweep must carry on after it
    spec = product({"train.learning_rate": [1e30, 0.05]}, {"seed": [0, 1]})
    logs: list[str] = []
    r = SweepRunner(_base(), spec, str(tmp_path), progress=False, vectorize=vectorize,
                    log=logs.append)
    summary = r.run()
    assert summary["ran"] == 4 and summary["error"] == 0
    assert summary["diverged"] == 2
    recs = r.store.latest()
    assert len(recs) == 4
    for rec in recs:
        if rec["setting"]["train.learning_rate"] > 1:
            _check_diverged(rec)
        else:
            _check_ok(rec)
    if vectorize == "auto":
        assert {rec["path"] for rec in recs} == {"vectorized"}, [x["path_reason"] for x in recs]
    # a rerun finds every run finished (diverged counts as finished): nothing is retried
    again = SweepRunner(_base(), spec, str(tmp_path), progress=False, vectorize=vectorize,
                        log=logs.append).run()
    assert again["ran"] == 0 and again["skipped"] == 4
    assert len(r.store.records()) == 4
