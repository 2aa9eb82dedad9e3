"""Data-parallel fit and the sweep-sharded vectorized trainer against the
single-device reference trainer (``jaxcomp.train.fit``) — in-process, one device.
(The same code on 8 devices and on 2 processes: test_distributed_multi.py.)"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcomp.core.errors import ConfigError
from jaxcomp.data import synthetic
from jaxcomp.distributed import make_mesh
from jaxcomp.distributed.data_parallel import evaluate_sharded, fit_data_parallel, sharded_init
from jaxcomp.distributed.vectorized import (
    evaluate_stacked,
    fit_stacked,
    init_stacked,
    setting,
    stack_trees,
)
from jaxcomp.models import get_model
from jaxcomp.train import cross_entropy, evaluate, fit
from jaxcomp.train.step import default_loss

SEED, LR, EPOCHS, BATCH = 5, 0.1, 2, 32


@pytest.fixture(scope="module")
def setup():
    ds = synthetic(num_train=192, num_test=100, shape=(4, 4, 1), num_classes=3, seed=1)
    model = get_model("mlp", input_shape=ds.input_shape, num_classes=3, features=(16,))
    return ds, model, make_mesh()


@pytest.fixture(scope="module")
def ref(setup):
    """The single-device reference: ``jaxcomp.train.fit``."""
    ds, model, _ = setup
    return fit(model, ds, optax.sgd(LR), epochs=EPOCHS, batch_size=BATCH, seed=SEED,
               progress=False)


def _close(a, b, tol=1e-5):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=tol, atol=tol)


@pytest.mark.parametrize("scan", [True, False])
def test_data_parallel_matches_fit(setup, ref, scan, tmp_path):
    """scan=False also stops after epoch 1 and resumes from its checkpoint."""
    ds, model, mesh = setup
    kw = dict(mesh=mesh, batch_size=BATCH, seed=SEED, scan=scan)
    tx = optax.sgd(LR)
    if not scan:
        kw["checkpoint_dir"] = str(tmp_path / "ckpt")
        first = fit_data_parallel(model, ds, tx, epochs=1, **kw)
        assert [h["epoch"] for h in first.history] == [1]
    got = fit_data_parallel(model, ds, tx, epochs=EPOCHS, **kw)
    if not scan:  # resumed after epoch 1: the first epoch's record comes from the history file
        assert got.history[0] == pytest.approx(first.history[0])
    _close(ref.state.params, got.state.params)
    assert [h["epoch"] for h in got.history] == [1, 2]
    for a, b in zip(ref.history, got.history, strict=True):
        for k in ("train_loss", "train_accuracy", "test_accuracy", "test_nll"):
            assert b[k] == pytest.approx(a[k], rel=1e-5, abs=1e-6)
    assert int(got.state.step) == EPOCHS * (192 // BATCH)


def test_data_parallel_loss_state_and_callback(setup):
    ds, model, mesh = setup

    def scaled(logits, batch):
        return batch["loss_state"]["w"] * cross_entropy(logits, batch["y"]), {
            "accuracy": jnp.float32(0)}

    seen = []
    tx = optax.sgd(0.1)
    r = fit_data_parallel(model, ds, tx, mesh=mesh, epochs=1, batch_size=32, eval_every=2,
                          loss_fn=scaled, loss_state={"w": jnp.float32(0.0)},
                          on_epoch=lambda e, s, m: seen.append(e), seed=2)
    init = sharded_init(model, ds, tx, mesh, seed=2)
    _close(r.state.params, init.params, tol=0)   # zero loss weight: nothing moves
    assert seen == [1] and int(r.state.step) == 6


def test_evaluate_sharded_matches_evaluate(setup, ref):
    ds, model, mesh = setup
    state = ref.state
    want = evaluate(model, state.params, state.model_state, ds.x_test, ds.y_test)
    got = evaluate_sharded(model, state, ds.x_test, ds.y_test, mesh=mesh, batch_size=30)
    assert got["accuracy"] == pytest.approx(want["accuracy"], abs=1e-9)
    assert got["nll"] == pytest.approx(want["nll"], rel=1e-5)


def test_data_parallel_bad_input(setup):
    ds, model, mesh = setup
    with pytest.raises(ConfigError, match=r"train.batch_size: got 0; allowed 1..192"):
        fit_data_parallel(model, ds, optax.sgd(0.1), mesh=mesh, epochs=1, batch_size=0)
    with pytest.raises(ConfigError, match=r"train.epochs: got -1"):
        fit_data_parallel(model, ds, optax.sgd(0.1), mesh=mesh, epochs=-1, batch_size=8)
    with pytest.raises(ConfigError, match=r"extra_batch .* not supported on a mesh"):
        fit_data_parallel(model, ds, optax.sgd(0.1), mesh=mesh, epochs=1, batch_size=8,
                          extra_batch=lambda idx: {})


def test_stacked_settings_with_per_setting_lr(setup, ref, tmp_path):
    """Setting 1 (seed == data_seed, lr 0.1) is exactly ``fit``; lr 0 leaves setting 2
    alone; the run stops after epoch 1 and resumes from its checkpoint."""
    ds, model, mesh = setup
    tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.5)
    lrs = np.array([0.05, LR, 0.0], np.float32)

    def set_lr(state, lr):
        hp = dict(state.opt_state.hyperparams, learning_rate=lr)
        return state._replace(opt_state=state.opt_state._replace(hyperparams=hp))

    st = init_stacked(model, ds, tx, seeds=[0, SEED, 2], mesh=mesh, settings=lrs,
                      apply_setting=set_lr)
    init_params = setting(st.params, 2)
    kw = dict(mesh=mesh, batch_size=BATCH, data_seed=SEED, checkpoint_dir=str(tmp_path))
    first = fit_stacked(model, ds, tx, st, epochs=1, **kw)
    r = fit_stacked(model, ds, tx, first.state, epochs=EPOCHS, **kw)
    assert [h["epoch"] for h in r.history] == [1, 2]       # resumed after epoch 1
    np.testing.assert_allclose(r.history[0]["test_nll"], first.history[0]["test_nll"])
    _close(ref.state.params, setting(r.state.params, 1))
    assert r.history[-1]["train_loss"][1] == pytest.approx(ref.final["train_loss"], rel=1e-5)
    assert r.history[-1]["test_accuracy"][1] == pytest.approx(ref.final["test_accuracy"])
    _close(init_params, setting(r.state.params, 2), tol=0)
    assert r.history[-1]["test_nll"].shape == (3,)
    ev = evaluate_stacked(model, r.state, ds.x_test, ds.y_test, mesh=mesh, batch_size=64)
    want = evaluate(model, setting(r.state.params, 0), {}, ds.x_test, ds.y_test)
    assert ev["accuracy"][0] == pytest.approx(want["accuracy"])
    assert ev["nll"][0] == pytest.approx(want["nll"], rel=1e-5)


def test_stacked_per_setting_loss_state(setup, ref):
    ds, model, mesh = setup

    def scaled(logits, batch):
        loss, aux = default_loss(logits, batch)
        return batch["loss_state"] * loss, aux

    tx = optax.sgd(LR)
    one = ref.state
    st = stack_trees([one, one])
    r = fit_stacked(model, ds, tx, st, mesh=mesh, epochs=1, batch_size=BATCH, loss_fn=scaled,
                    loss_state=jnp.array([1.0, 0.0]))
    _close(one.params, setting(r.state.params, 1), tol=0)
    moved = jax.tree.map(lambda a, b: np.abs(a - b).max(), one.params,
                         setting(r.state.params, 0))
    assert max(jax.tree.leaves(moved)) > 1e-3


def test_stacked_bad_input(setup):
    ds, model, mesh = setup
    tx = optax.sgd(0.1)
    with pytest.raises(ConfigError, match=r"sweep.settings: got 2 settings for 3 seeds"):
        init_stacked(model, ds, tx, seeds=[0, 1, 2], mesh=mesh, settings=np.zeros(2))
    st = {"w": np.zeros((2, 3), np.float32)}
    with pytest.raises(ConfigError, match=r"sweep.loss_state: leading axis 3"):
        fit_stacked(model, ds, tx, st, mesh=mesh, epochs=1, batch_size=32,
                    loss_state=jnp.zeros(3))
    with pytest.raises(ConfigError, match=r"train.batch_size: got 500; allowed 1..192"):
        fit_stacked(model, ds, tx, st, mesh=mesh, epochs=1, batch_size=500)
    with pytest.raises(ConfigError, match="nothing to stack"):
        stack_trees([])
