"""The optax wrapper: exact zeros under any optimizer, masks in the opt state, fit, orbax."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcomp.core import schedules
from jaxcomp.core.errors import ConfigError
from jaxcomp.data import synthetic
from jaxcomp.models import get_model
from jaxcomp.prune import dst, get_masks, magnitude, masked_optimizer, pruner
from jaxcomp.train import Checkpointer, fit

PARAMS = {"Dense_0": {"kernel": jnp.arange(1.0, 13.0).reshape(3, 4) * jnp.array([1, -1, 1, -1.]),
                      "bias": jnp.ones(4)}}


@pytest.mark.parametrize("use_jit", [True, False])
@pytest.mark.parametrize("inner", ["adam", "chain"])
def test_pruned_weights_stay_exactly_zero(use_jit, inner):
    base = optax.adam(0.1) if inner == "adam" else optax.chain(
        optax.add_decayed_weights(0.1), optax.sgd(0.1, momentum=0.9))
    sched = schedules.polynomial(0.0, 0.5, begin=0, end=4, frequency=2)
    tx = masked_optimizer(base, pruner("magnitude", sched))
    upd = jax.jit(tx.update) if use_jit else tx.update
    params, state = PARAMS, tx.init(PARAMS)
    for i in range(6):
        grads = jax.tree.map(lambda x, i=i: jnp.cos(x + i), params)
        u, state = upd(grads, state, params)
        params = optax.apply_updates(params, u)
        m = get_masks(state)["Dense_0/kernel"]
        w = params["Dense_0"]["kernel"]
        assert np.all(np.asarray(w)[~np.asarray(m)] == 0.0)
    assert int((~m).sum()) == 6  # round(0.5 * 12) at the end of the schedule
    # hand check at step 0 -> sparsity 0, nothing pruned, plain adam/sgd update
    assert int(state.count) == 6


def test_matches_reference_masked_sgd():
    """With SGD the wrapper equals: w <- (w - lr*g) * mask(w), masks from the current w."""
    tx = masked_optimizer(optax.sgd(0.5), magnitude(0.25))
    w = np.asarray(PARAMS["Dense_0"]["kernel"])
    g = np.full_like(w, 0.25)
    u, state = tx.update({"Dense_0": {"kernel": jnp.asarray(g), "bias": jnp.zeros(4)}},
                         tx.init(PARAMS), PARAMS)
    new = np.asarray(optax.apply_updates(PARAMS, u)["Dense_0"]["kernel"])
    cand = w - 0.5 * g
    keep = np.ones(12, bool)
    keep[np.argsort(np.abs(w).ravel(), kind="stable")[:3]] = False
    np.testing.assert_array_equal(new, np.where(keep.reshape(3, 4), cand, 0.0))


def test_update_without_params_is_config_error():
    tx = masked_optimizer(optax.sgd(0.1), magnitude(0.5))
    with pytest.raises(ConfigError, match="needs params"):
        tx.update(PARAMS, tx.init(PARAMS))


def test_fit_and_checkpoint_roundtrip(tmp_path):
    ds = synthetic(num_train=256, num_test=64)
    model = get_model("mlp", input_shape=ds.input_shape, num_classes=4, features=(16,))
    sched = schedules.polynomial(0.0, 0.75, begin=0, end=8, frequency=4)
    tx = masked_optimizer(optax.adam(1e-2), pruner("magnitude", sched, allocation="global"))
    res = fit(model, ds, tx, epochs=2, batch_size=32, seed=0, progress=False)
    masks = get_masks(res.state.opt_state)
    kernels = [res.state.params[k]["kernel"] for k in ("Dense_0", "Dense_1")]
    total = sum(int(m.size) for m in masks.values())
    assert sum(int((~m).sum()) for m in masks.values()) == round(0.75 * total)
    for k, p in zip(("Dense_0", "Dense_1"), kernels, strict=True):
        assert np.all(np.asarray(p)[~np.asarray(masks[f"{k}/kernel"])] == 0.0)
    assert_masks_survive_checkpoint(res.state, masks, "opt_state", tmp_path)


def assert_masks_survive_checkpoint(state, masks, where, tmp_path):
    """Save ``state`` with the engine's Checkpointer, restore it, and find ``masks`` again
    in its ``where`` field (``opt_state`` or ``comp_state``)."""
    ck = Checkpointer(str(tmp_path / "ck"))
    ck.save(state, epoch=2)
    restored, epoch = ck.restore_latest(state)
    ck.close()
    assert epoch == 2
    got = get_masks(getattr(restored, where))
    assert set(got) == set(masks)
    for p, m in got.items():
        np.testing.assert_array_equal(np.asarray(m), np.asarray(masks[p]))


@pytest.mark.parametrize("method", ["set", "rigl"])
def test_dynamic_sparse_keeps_count_and_regrows_at_zero(method):
    t = dst.dynamic_sparse(method, 0.5, drop_fraction=0.5, every=2, end=20)
    tx = masked_optimizer(optax.adam(0.05), t, seed=3)
    params, state = PARAMS, tx.init(PARAMS)
    history = []
    for i in range(7):
        grads = jax.tree.map(lambda x, i=i: jnp.sin(3 * x + i), params)
        u, state = jax.jit(tx.update)(grads, state, params)
        old = None if not history else history[-1]
        params = optax.apply_updates(params, u)
        m = np.asarray(get_masks(state)["Dense_0/kernel"])
        history.append(m)
        assert m.sum() == 6
        w = np.asarray(params["Dense_0"]["kernel"])
        assert np.all(w[~m] == 0.0)
        if old is not None:
            grown = m & ~old
            assert np.all(w[grown] == 0.0)  # regrown weights start at zero
    assert any((a != b).any() for a, b in zip(history[1:], history[2:], strict=False))


def test_rigl_regrows_largest_gradients():
    params = {"w": jnp.array([[4.0, 3.0, 0.0, 0.0]])}
    t = dst.rigl(0.5, drop_fraction=0.5, every=1, end=1000)
    s = t.init(params)
    s = {**s, "masks": {"w": jnp.array([[True, True, False, False]])}}
    grads = {"w": jnp.array([[0.0, 0.0, 1.0, 5.0]])}
    s = t.update(params, s, step=1, grads=grads, key=jax.random.key(0))
    # drop 1 (the smaller active |w| = 3.0), grow 1 (the largest inactive |g| = 5.0)
    assert np.asarray(s["masks"]["w"]).tolist() == [[True, False, False, True]]


def test_monotone_pruner_never_regrows_even_when_sparsity_falls():
    from jaxcomp.prune.pruner import ShrinkingPruner

    params = {"Dense_0": {"kernel": jnp.asarray(np.random.default_rng(0).normal(size=(8, 8)),
                                                jnp.float32)}}
    # sparsity 0.75 at steps 0..9, then 0.25: the monotone pruner keeps its 48 zeros
    sched = schedules.one_shot(0.25, at=10, before=0.75)
    t = pruner("magnitude", sched, gate=(0, 20, 10))
    assert isinstance(t, ShrinkingPruner) and t.never_regrows
    s = t.update(params, t.init(params), step=0)
    first = np.asarray(s["masks"]["Dense_0/kernel"])
    s = t.update(params, s, step=10)
    later = np.asarray(s["masks"]["Dense_0/kernel"])
    assert (~first).sum() == 48 and not np.any(later & ~first)
    regrowing = pruner("magnitude", sched, gate=(0, 20, 10), monotone=False)
    assert not getattr(regrowing, "never_regrows", False)
    s = regrowing.update(params, regrowing.init(params), step=10)
    assert (~np.asarray(s["masks"]["Dense_0/kernel"])).sum() == 16


@pytest.mark.parametrize("monotone", [True, False])
def test_masked_training_keeps_zeros_for_shrinking_and_regrowing_pruners(monotone):
    rng = np.random.default_rng(1)
    params = {"w": jnp.asarray(rng.normal(size=(16, 4)), jnp.float32)}
    sched = schedules.cubic(0.0, 0.8, begin=0, end=20, frequency=5)
    tx = masked_optimizer(optax.adam(0.05), pruner("magnitude", sched, where=["w"],
                                                   monotone=monotone))
    state = tx.init(params)
    step = jax.jit(tx.update)
    for i in range(30):
        g = {"w": jnp.asarray(rng.normal(size=(16, 4)), jnp.float32)}
        u, state = step(g, state, params)
        params = optax.apply_updates(params, u)
        m = np.asarray(get_masks(state)["w"])
        assert np.all(np.asarray(params["w"])[~m] == 0.0), i
    assert (~m).sum() == round(0.8 * 64)
