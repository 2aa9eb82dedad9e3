"""Train step, evaluation, the fit loop, determinism, checkpoints and resume."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxcomp as jc
from jaxcomp.core import ConfigError
from jaxcomp.core.transform import Transform
from jaxcomp.data import synthetic
from jaxcomp.models import get_model
from jaxcomp.train import create_state, evaluate, fit, make_train_step, train_step_fn
from tests.conformance import assert_trees_close

DS = synthetic(num_train=256, num_test=128, shape=(8, 8, 1), num_classes=4)


def mlp():
    return get_model("mlp", input_shape=DS.input_shape, num_classes=4, features=(32,))


def zero_first_layer() -> Transform:
    return jc.stateless(lambda p: {**p, "Dense_0": {**p["Dense_0"],
                                                    "kernel": 0 * p["Dense_0"]["kernel"]}})


@pytest.mark.parametrize("use_jit", [False, True])
def test_step_jit_matches_eager(use_jit):
    m, tx = mlp(), optax.adam(1e-2)
    params, ms = m.init(jax.random.key(0), DS.x_train[:1])
    batch = {"x": jnp.asarray(DS.x_train[:32]), "y": jnp.asarray(DS.y_train[:32])}
    ref_state = create_state(params, ms, tx, key=jax.random.key(1))
    ref, _ = train_step_fn(m, tx)(ref_state, batch)
    step = make_train_step(m, tx, donate=False) if use_jit else train_step_fn(m, tx)
    out, metrics = step(create_state(params, ms, tx, key=jax.random.key(1)), batch)
    assert_trees_close(ref.params, out.params, atol=1e-6)
    assert int(out.step) == 1 and np.isfinite(float(metrics["loss"]))


def test_identity_transform_changes_nothing():
    a = fit(mlp(), DS, optax.adam(1e-2), epochs=2, batch_size=32, seed=0, progress=False)
    b = fit(mlp(), DS, optax.adam(1e-2), epochs=2, batch_size=32, seed=0, progress=False,
            transform=jc.identity())
    assert_trees_close(a.state.params, b.state.params, atol=0, rtol=0)


def test_forward_pass_sees_transformed_params():
    r = fit(mlp(), DS, optax.adam(1e-2), epochs=1, batch_size=32, seed=0, progress=False,
            transform=zero_first_layer())
    # the first layer is zeroed in the forward pass, so its kernel gets no gradient
    params0, _ = mlp().init(jax.random.split(jax.random.key(0))[0], jnp.asarray(DS.x_train[:1]))
    np.testing.assert_array_equal(r.state.params["Dense_0"]["kernel"],
                                  params0["Dense_0"]["kernel"])
    # and the model can only predict from biases: near-chance accuracy
    assert r.history[-1]["test_accuracy"] < 0.6


def test_same_seed_bitwise_same_and_different_seed_differs():
    runs = [fit(mlp(), DS, optax.adam(1e-2), epochs=2, batch_size=32, seed=s, progress=False)
            for s in (0, 0, 1)]
    assert runs[0].history == runs[1].history
    assert_trees_close(runs[0].state.params, runs[1].state.params, atol=0, rtol=0)
    assert runs[0].history != runs[2].history


def test_scan_and_loop_agree():
    a = fit(mlp(), DS, optax.adam(1e-2), epochs=2, batch_size=32, seed=0, progress=False,
            scan=True)
    b = fit(mlp(), DS, optax.adam(1e-2), epochs=2, batch_size=32, seed=0, progress=False,
            scan=False)
    assert_trees_close(a.state.params, b.state.params, atol=1e-5)
    assert a.history[-1]["test_accuracy"] == pytest.approx(b.history[-1]["test_accuracy"],
                                                           abs=1 / 128)


def test_evaluate_against_numpy():
    m = mlp()
    params, ms = m.init(jax.random.key(0), DS.x_train[:1])
    logits = np.asarray(m.apply(params, ms, jnp.asarray(DS.x_test))[0], np.float64)
    acc = np.mean(logits.argmax(1) == DS.y_test)
    logp = logits - logits.max(1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
    nll = -np.mean(logp[np.arange(len(logp)), DS.y_test])
    ev = evaluate(m, params, ms, DS.x_test, DS.y_test, batch_size=50)  # padded last batch
    assert ev["accuracy"] == pytest.approx(acc, abs=1e-9)
    assert ev["nll"] == pytest.approx(nll, rel=1e-5)


def test_divergence_is_detected():
    r = fit(mlp(), DS, optax.sgd(float("nan")), epochs=3, batch_size=32, seed=0,
            progress=False)
    assert r.diverged and r.diverged_step is not None and len(r.history) == 1


def test_checkpoint_resume_equals_straight_run(tmp_path):
    d = str(tmp_path / "ck")
    straight = fit(mlp(), DS, optax.adam(1e-2), epochs=4, batch_size=32, seed=0,
                   progress=False)
    fit(mlp(), DS, optax.adam(1e-2), epochs=2, batch_size=32, seed=0, progress=False,
        checkpoint_dir=d)
    resumed = fit(mlp(), DS, optax.adam(1e-2), epochs=4, batch_size=32, seed=0,
                  progress=False, checkpoint_dir=d)
    assert resumed.resumed_epochs == 2  # only epochs 3 and 4 ran
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]  # saved history restored
    for a, b in zip(resumed.history, straight.history, strict=True):
        assert a["test_accuracy"] == pytest.approx(b["test_accuracy"], abs=1 / 128)
    assert_trees_close(straight.state.params, resumed.state.params, atol=1e-6)
    assert int(resumed.state.step) == int(straight.state.step)


def test_corrupt_checkpoint_is_detected(tmp_path):
    d = tmp_path / "ck"
    fit(mlp(), DS, optax.adam(1e-2), epochs=1, batch_size=32, seed=0, progress=False,
        checkpoint_dir=str(d))
    for f in (d / "1").rglob("*"):
        if f.is_file():
            f.write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="unreadable or incomplete"):
        fit(mlp(), DS, optax.adam(1e-2), epochs=2, batch_size=32, seed=0, progress=False,
            checkpoint_dir=str(d))


def test_bad_batch_size():
    with pytest.raises(ConfigError, match="batch_size"):
        fit(mlp(), DS, optax.adam(1e-2), epochs=1, batch_size=10_000, progress=False)


def test_lenet300_learns_fast_on_digits():
    from jaxcomp.data import digits

    ds = digits()
    m = get_model("lenet300", input_shape=ds.input_shape)
    r = fit(m, ds, optax.adam(1e-3), epochs=5, batch_size=64, seed=0, progress=False)
    assert r.history[-1]["test_accuracy"] > 0.9
