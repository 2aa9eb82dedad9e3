"""The one engine: a stacked run equals its single runs, resuming equals not
stopping, cached arrays reach the loss the same way on every path, a diverging
setting is flagged while the others train on, and programs are compiled once."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcomp.core.errors import ConfigError
from jaxcomp.data import synthetic
from jaxcomp.distributed import make_mesh
from jaxcomp.distributed.data_parallel import fit_data_parallel
from jaxcomp.engine import Programs, run, train_settings
from jaxcomp.engine.settings import stack
from jaxcomp.models import get_model
from jaxcomp.train import fit, init_state
from jaxcomp.train.loop import programs_for
from jaxcomp.train.losses import correct, per_example_nll


@pytest.fixture(scope="module")
def setup():
    ds = synthetic(num_train=192, num_test=70)
    model = get_model("mlp", input_shape=ds.input_shape, num_classes=4, features=(12,))
    return ds, model


def _close(a, b, tol=1e-5):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=tol, atol=tol)


def test_stacked_settings_equal_their_single_runs(setup):
    ds, model = setup
    tx = optax.inject_hyperparams(optax.adam)(learning_rate=1e-2)

    def set_lr(state, lr):
        state.opt_state.hyperparams["learning_rate"] = lr
        return state

    lrs = np.array([1e-2, 3e-3, 1e-2], np.float32)
    seeds = [0, 1, 2]
    r = train_settings(model, ds, tx, seeds=seeds, epochs=2, batch_size=32,
                       settings=lrs, apply_setting=set_lr)
    assert r.history[-1]["test_accuracy"].shape == (3,)
    for i, seed in enumerate(seeds):
        single = fit(model, ds, optax.adam(float(lrs[i])), epochs=2, batch_size=32, seed=seed,
                     progress=False)
        _close(jax.tree.map(lambda x, i=i: x[i], r.state.params), single.state.params)
        assert r.history[-1]["test_accuracy"][i] == pytest.approx(
            single.final["test_accuracy"], abs=1e-6)
        assert r.history[-1]["train_loss"][i] == pytest.approx(single.final["train_loss"],
                                                                rel=1e-5)


@pytest.mark.parametrize("stacked", [False, True])
def test_resume_from_checkpoint_equals_an_uninterrupted_run(setup, tmp_path, stacked):
    ds, model = setup
    tx = optax.sgd(0.1)
    seeds = [0, 1] if stacked else 0

    def state():
        if stacked:
            return stack([init_state(model, ds, tx, seed=s) for s in seeds])
        return init_state(model, ds, tx, seed=0)

    progs = Programs(model, tx, batch_size=32, stacked=stacked)
    whole = run(progs, state(), ds, epochs=3, seeds=seeds)
    d = str(tmp_path / "ck")
    run(progs, state(), ds, epochs=1, seeds=seeds, checkpoint_dir=d)
    resumed = run(progs, state(), ds, epochs=3, seeds=seeds, checkpoint_dir=d)
    assert resumed.resumed_epochs == 1
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    _close(resumed.state.params, whole.state.params, tol=0)
    np.testing.assert_array_equal(resumed.final["test_accuracy"], whole.final["test_accuracy"])
    assert progs.compiles == 1  # one program for every call


def _weighted_loss(logits, batch):
    nll = per_example_nll(logits, batch["y"])
    return jnp.mean(batch["w"] * nll), {"accuracy": jnp.mean(correct(logits, batch["y"]))}


def test_cached_arrays_reach_the_loss_on_every_path(setup):
    ds, model = setup
    tx = optax.adam(1e-2)
    w = np.linspace(0.0, 2.0, len(ds.x_train)).astype(np.float32)
    kw = dict(epochs=2, batch_size=32, seed=3, loss_fn=_weighted_loss, progress=False)
    scanned = fit(model, ds, tx, scan=True, cached={"w": w}, **kw)
    stepped = fit(model, ds, tx, scan=False, cached={"w": w}, **kw)
    python = fit(model, ds, tx, scan=False, extra_batch=lambda idx: {"w": w[idx]}, **kw)
    del kw["progress"]
    mesh = make_mesh()
    dp = fit_data_parallel(model, ds, tx, mesh=mesh, scan=True, cached={"w": w}, **kw)
    dp_step = fit_data_parallel(model, ds, tx, mesh=mesh, scan=False, cached={"w": w}, **kw)
    for other in (stepped, python, dp, dp_step):
        _close(other.state.params, scanned.state.params)
    # the weights matter: all-ones weights train to different params
    plain = fit(model, ds, tx, scan=True, cached={"w": np.ones_like(w)}, progress=False,
                **{k: v for k, v in kw.items()})
    diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in
               zip(jax.tree.leaves(plain.state.params), jax.tree.leaves(scanned.state.params),
                   strict=True))
    assert diff > 1e-3


def test_a_diverging_setting_is_flagged_while_the_others_train_on(setup):
    ds, model = setup
    tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)

    def set_lr(state, lr):
        state.opt_state.hyperparams["learning_rate"] = lr
        return state

    r = train_settings(model, ds, tx, seeds=[0, 0], epochs=2, batch_size=32,
                       settings=jnp.array([0.1, 1e30]), apply_setting=set_lr)
    assert r.diverged and r.diverged_steps[0] == -1 and r.diverged_steps[1] > 0
    assert np.isfinite(r.history[-1]["train_loss"][0])
    assert r.history[-1]["test_accuracy"][0] > 0.5


def test_fit_reuses_its_compiled_programs(setup):
    ds, model = setup
    tx = optax.sgd(0.05)
    progs = programs_for(model, tx, 32)
    before = progs.compiles
    for seed in (0, 1):
        fit(model, ds, tx, epochs=1, batch_size=32, seed=seed, progress=False, scan=True)
    assert progs.compiles - before <= 1


@pytest.mark.parametrize("kwargs,match", [
    (dict(seeds=[]), r"seeds is empty"),
    (dict(seeds=[0, 1], settings=jnp.zeros(3)), r"settings has leading axis \[3\]; it must be 2"),
    (dict(seeds=[0, 1], settings=jnp.zeros(2)), r"without apply_setting"),
    (dict(seeds=[0, 1], loss_state={"t": jnp.zeros(5)}), r"loss_state has leading axis \[5\]"),
    (dict(seeds=[0, 1], data_seeds=[0]), r"data_seeds has 1 entries for 2 seeds"),
    (dict(seeds=[0], epochs=-1), r"train.epochs: got -1"),
    (dict(seeds=[0], batch_size=0), r"train.batch_size: got 0; allowed 1..192"),
])
def test_train_settings_refuses_bad_input_clearly(setup, kwargs, match):
    ds, model = setup
    kw = dict(epochs=1, batch_size=32)
    kw.update(kwargs)
    with pytest.raises(ConfigError, match=match):
        train_settings(model, ds, optax.sgd(0.1), **kw)


def test_engine_refuses_contradictory_feeds(setup):
    ds, model = setup
    tx = optax.sgd(0.1)
    progs = Programs(model, tx, batch_size=32, stacked=True)
    st = stack([init_state(model, ds, tx, seed=s) for s in (0, 1)])
    with pytest.raises(ConfigError, match=r"per-step training \(scan=False\) needs an unstacked"):
        run(progs, st, ds, epochs=1, seeds=[0, 1], scan=False)
    single = Programs(model, tx, batch_size=32)
    with pytest.raises(ConfigError, match=r"stream=True needs a mesh"):
        run(single, init_state(model, ds, tx, seed=0), ds, epochs=1, seeds=0, stream=True)
    with pytest.raises(ConfigError, match=r"cached array 'w': has 5 rows but the training set "
                                          r"has 192"):
        run(single, init_state(model, ds, tx, seed=0), ds, epochs=1, seeds=0,
            cached={"w": np.zeros(5)})
