"""One-shot magnitude pruners prune at ``init``; masks read back from an orbax restore."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from jaxcomp.core import schedules
from jaxcomp.prune import (
    MaskedState,
    get_masks,
    magnitude,
    masked_optimizer,
    prune_once,
    pruner,
    random,
    snip,
)
from jaxcomp.prune.optax_wrapper import find_prune_state

# |w| is a permutation of 1..40, so the 80 % smallest are exactly the values 1..32
W = jnp.asarray(np.random.default_rng(0).permutation(np.arange(1.0, 41.0))
                * np.tile([1.0, -1.0], 20)).reshape(5, 8)
PARAMS = {"Dense_0": {"kernel": W, "bias": jnp.ones(8)}}


@pytest.mark.parametrize("use_jit", [False, True])
def test_magnitude_number_prunes_at_init_to_the_exact_count(use_jit):
    t = magnitude(0.8)
    init = jax.jit(t.init) if use_jit else t.init
    mask = np.asarray(init(PARAMS)["masks"]["Dense_0/kernel"])
    assert int((~mask).sum()) == 32  # round(0.8 * 40)
    np.testing.assert_array_equal(mask, np.abs(np.asarray(W)) > 32)
    out = t.apply(PARAMS, init(PARAMS))["Dense_0"]
    np.testing.assert_array_equal(np.asarray(out["kernel"]),
                                  np.where(np.abs(np.asarray(W)) > 32, np.asarray(W), 0.0))
    np.testing.assert_array_equal(np.asarray(out["bias"]), np.ones(8))


def test_update_at_the_gate_after_init_changes_nothing():
    t = magnitude(0.8)
    s0 = t.init(PARAMS)
    moved = jax.tree.map(lambda x: x[::-1], PARAMS)  # other weights now smallest
    s1 = jax.jit(lambda p, s: t.update(p, s, step=0))(moved, s0)
    np.testing.assert_array_equal(np.asarray(s1["masks"]["Dense_0/kernel"]),
                                  np.asarray(s0["masks"]["Dense_0/kernel"]))
    pruned, _ = prune_once(t, PARAMS)
    assert int((np.asarray(pruned["Dense_0"]["kernel"]) == 0).sum()) == 32


def test_per_path_numbers_and_vmapped_sparsity_prune_at_init():
    s = magnitude({"Dense_0/kernel": 0.5}).init(PARAMS)
    assert int((~s["masks"]["Dense_0/kernel"]).sum()) == 20
    counts = jax.vmap(lambda sp: (~magnitude(sp).init(PARAMS)["masks"]["Dense_0/kernel"])
                      .sum())(jnp.array([0.25, 0.8]))
    assert counts.tolist() == [10, 32]


@pytest.mark.parametrize("make", [
    lambda: magnitude(schedules.polynomial(0.0, 0.8, begin=0, end=10, frequency=2)),
    lambda: magnitude(schedules.one_shot(0.8, at=5)),
    lambda: magnitude(0.8, gate=(3, 3, 1)),
    lambda: random(0.8),
    lambda: snip(0.8),
    lambda: pruner("taylor", 0.8),
], ids=["gradual_from_0", "one_shot_schedule_at_5", "explicit_gate", "random", "snip",
        "taylor"])
def test_schedules_gates_and_scores_needing_grads_or_key_start_dense(make):
    assert bool(make().init(PARAMS)["masks"]["Dense_0/kernel"].all())


def test_masked_optimizer_with_one_shot_magnitude_is_sparse_from_init():
    tx = masked_optimizer(optax.adam(0.1), magnitude(0.8))
    state = tx.init(PARAMS)
    assert int((~get_masks(state)["Dense_0/kernel"]).sum()) == 32
    u, state = jax.jit(tx.update)(jax.tree.map(jnp.ones_like, PARAMS), state, PARAMS)
    w = optax.apply_updates(PARAMS, u)["Dense_0"]["kernel"]
    assert int((np.asarray(w) == 0).sum()) == 32


def _save_and_restore(tree, directory, target=None):
    with ocp.StandardCheckpointer() as ck:
        ck.save(directory, tree)
    with ocp.StandardCheckpointer() as ck:
        if target is None:
            return ck.restore(directory)
        return ck.restore(directory, jax.tree.map(ocp.utils.to_shape_dtype_struct, target))


def test_get_masks_after_orbax_restore_without_target(tmp_path):
    sched = schedules.polynomial(0.0, 0.5, begin=0, end=2, frequency=1)
    tx = optax.chain(optax.clip_by_global_norm(1.0),
                     masked_optimizer(optax.adam(0.1), magnitude(sched)))
    state = tx.init(PARAMS)
    grads = jax.tree.map(jnp.cos, PARAMS)
    params = PARAMS
    for _ in range(3):
        u, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, u)
    want = np.asarray(get_masks(state)["Dense_0/kernel"])
    assert int((~want).sum()) == 20
    restored = _save_and_restore({"opt_state": state, "params": params},
                                 tmp_path / "plain")
    assert isinstance(restored["opt_state"], list)  # the chain's tuple, now plain
    assert not isinstance(restored["opt_state"][1], MaskedState)
    for tree in (restored, restored["opt_state"], restored["opt_state"][1]):
        got = get_masks(tree)["Dense_0/kernel"]
        assert got.dtype == bool
        np.testing.assert_array_equal(np.asarray(got), want)
    assert sorted(find_prune_state(restored)) == ["gate", "masks", "schedule"]


def test_restore_with_target_gives_a_state_that_trains_on(tmp_path):
    tx = masked_optimizer(optax.adam(0.1), magnitude(0.8))
    state = tx.init(PARAMS)
    u, state = tx.update(jax.tree.map(jnp.cos, PARAMS), state, PARAMS)
    back = _save_and_restore(state, tmp_path / "typed", target=tx.init(PARAMS))
    assert isinstance(back, MaskedState) and int(back.count) == 1
    u2, _ = tx.update(jax.tree.map(jnp.cos, PARAMS), back, PARAMS)
    u1, _ = tx.update(jax.tree.map(jnp.cos, PARAMS), state, PARAMS)
    for a, b in zip(jax.tree.leaves(u1), jax.tree.leaves(u2), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
