"""Accounting (params/FLOPs per layer, measured times, per-layer form choice) and the
experiment family hook through run_experiment."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcomp.core.errors import ConfigError
from jaxcomp.decompose import (
    apply_choice,
    choose_forms,
    factorize,
    layer_cost,
    layer_shapes,
    layer_timings,
    ledger,
    totals,
)
from jaxcomp.decompose.blas import one_blas_thread
from jaxcomp.experiment import base_config, run_experiment
from jaxcomp.models import get_model


@pytest.fixture(autouse=True)
def _one_blas_thread():
    with one_blas_thread():
        yield


def test_ledger_hand_computed_lenet5():
    m = get_model("lenet5", input_shape=(28, 28, 1))
    p, s = m.init(jax.random.key(0), jnp.ones((1, 28, 28, 1)))
    shapes = layer_shapes(m, p, s, (28, 28, 1))
    assert shapes["Conv_1"]["in"] == (1, 14, 14, 6) and shapes["Conv_1"]["out"] == (1, 10, 10, 16)
    rows = {r["path"]: r for r in ledger(shapes, {"Conv_1": {"method": "tucker2",
                                                             "rank": [3, 6]},
                                                  "Dense_0": {"method": "svd", "rank": 10}})}
    c = rows["Conv_1"]
    assert c["params_before"] == 5 * 5 * 6 * 16
    assert c["params_after"] == 6 * 3 + 25 * 3 * 6 + 6 * 16
    assert c["flops_before"] == 2 * 2400 * 100
    assert c["flops_after"] == 2 * (6 * 3 * 196 + 25 * 18 * 100 + 6 * 16 * 100)
    assert rows["Dense_0"]["params_after"] == 10 * (400 + 120)
    assert rows["Conv_0"]["params_after"] == rows["Conv_0"]["params_before"]
    cp = layer_cost(shapes["Conv_1"], "cp", 4)
    assert cp == {"params": 4 * (6 + 5 + 5 + 16),
                  "flops": 2 * (6 * 4 * 196 + 5 * 4 * 10 * 14 + 5 * 4 * 100 + 4 * 16 * 100)}
    t = totals(list(rows.values()))
    assert t["params_before"] == sum(r["params_before"] for r in rows.values())
    # the dense FLOPs agree with XLA's count of the conv
    x = jnp.ones((1, 14, 14, 6))
    k = p["Conv_1"]["kernel"]
    cost = jax.jit(lambda x, k: jax.lax.conv_general_dilated(
        x, k, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))).lower(
        x, k).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    assert c["flops_before"] == pytest.approx(cost["flops"], rel=0.01)


def test_layer_timings_choice_and_apply_choice():
    m = get_model("mlp", input_shape=(64,), num_classes=10, features=(128,))
    p, s = m.init(jax.random.key(0), jnp.ones((1, 64)))
    spec = {"Dense_0": {"method": "svd", "rank": 4}, "Dense_1": {"method": "svd", "rank": 10}}
    f = factorize(m, p, spec)
    shapes = layer_shapes(m, p, s, (64,))
    t = layer_timings(shapes, f.params, spec, batch=32, repeats=3)
    assert set(t) == {"Dense_0", "Dense_1"}
    assert all(v["dense_s"] > 0 and v["factorized_s"] > 0 for v in t.values())
    forced = {"Dense_0": {"dense_s": 1.0, "factorized_s": 2.0},
              "Dense_1": {"dense_s": 2.0, "factorized_s": 1.0}}
    choice = choose_forms(forced)
    assert choice == {"Dense_0": "dense", "Dense_1": "factorized"}
    assert set(choose_forms(t).values()) <= {"dense", "factorized"}
    params, kept = apply_choice(f.params, spec, choice)
    assert set(kept) == {"Dense_1"} and set(params["Dense_0"]) == {"kernel", "bias"}
    np.testing.assert_allclose(params["Dense_0"]["kernel"],
                               f.params["Dense_0"]["u"] @ f.params["Dense_0"]["v"], atol=1e-6)


def _tiny_cfg():
    cfg = base_config()
    cfg.data.name = "synthetic"
    cfg.model.name = "mlp"
    cfg.train.epochs = 1
    cfg.train.batch_size = 64
    cfg.decompose.method = "svd"
    cfg.decompose.rank = 4
    cfg.decompose.where = ("Dense_0/kernel",)
    cfg.decompose.measure_batch = 0
    return cfg


def test_run_experiment_with_decompose():
    rec = run_experiment(_tiny_cfg())
    m = rec["metrics"]
    assert 0.0 <= m["decompose_accuracy_before_finetune"] <= 1.0
    assert 0.0 <= m["decompose_accuracy_after_finetune"] <= 1.0
    rows = {r["path"]: r for r in rec["ledger"]["decompose_layers"]}
    r0 = rows["Dense_0"]
    assert r0["rank"] == 4
    assert (r0["params_before"], r0["params_after"]) == (64 * 300, 4 * (64 + 300))
    assert rows["Dense_1"]["params_after"] == rows["Dense_1"]["params_before"]
    assert rec["ledger"]["decompose_spec"] == {"Dense_0": {"method": "svd", "rank": 4}}


def test_family_config_errors():
    cfg = _tiny_cfg()
    cfg.decompose.energy = 1.5
    with pytest.raises(ConfigError, match=r"decompose.energy: got 1.5; allowed range \(0, 1\]"):
        run_experiment(cfg)
    cfg = _tiny_cfg()
    cfg.decompose.method = "tucker"
    with pytest.raises(ConfigError, match=r"decompose.method: got 'tucker'"):
        run_experiment(cfg)
