"""The experiment family hook: run_experiment with pruning configs, and bad config values."""

import pytest

from jaxcomp.core.errors import ConfigError
from jaxcomp.experiment import base_config, run_experiment
from jaxcomp.prune import family


def small_cfg(**prune):
    cfg = base_config()
    cfg.data.name = "digits"
    cfg.model.name = "mlp"
    cfg.train.epochs = 2
    cfg.train.batch_size = 64
    for k, v in prune.items():
        cfg.prune[k] = v
    return cfg


def test_run_experiment_gradual_magnitude():
    rec = run_experiment(small_cfg(method="magnitude", sparsity=0.8, frequency=5))
    assert abs(rec["ledger"]["prune_sparsity"] - 0.8) < 1e-3
    # after training, the ledger counts the exact zeros of the raw params
    assert rec["ledger"]["nonzeros"] < 0.3 * rec["ledger"]["params"]
    assert rec["ledger"]["bytes_bitmask"] < rec["ledger"]["bytes_fp32"] / 3
    assert rec["metrics"]["test_accuracy"] > 0.5


def test_build_one_shot_global_and_iterative():
    cfg = family.default_config()
    cfg.method = "snip"
    cfg.schedule = "one_shot"
    t = family.build(cfg, steps=100)
    assert t.init is not None
    cfg.schedule = "iterative"
    cfg.rounds = 4
    cfg.end = 80
    import jax.numpy as jnp
    s = family.build(cfg, steps=100).init({"w": jnp.ones((4, 4))})
    assert [int(s["gate"][k]) for k in ("begin", "end", "every")] == [20, 80, 20]
    assert abs(float(s["schedule"](40)) - 0.45) < 1e-6  # 2 of 4 rounds of 0.9


@pytest.mark.parametrize("key,value,match", [
    ("sparsity", 1.0, r"prune.sparsity: got 1.0; allowed range \[0, 1\)"),
    ("method", "magnitud", "prune.method.*did you mean"),
    ("allocation", "per_layer", "prune.allocation"),
    ("frequency", 0, r"prune.frequency: got 0"),
    ("end", 3, "prune.end"),
])
def test_bad_config_values(key, value, match):
    cfg = family.default_config()
    cfg.method = "magnitude"
    cfg.begin = 5
    cfg[key] = value
    with pytest.raises(ConfigError, match=match):
        family.validate(cfg)


def test_selection_matching_nothing_is_config_error():
    cfg = small_cfg(method="magnitude", where=("Conv_.*",))
    with pytest.raises(ConfigError, match="Conv_.*matches no parameter path"):
        run_experiment(cfg)
