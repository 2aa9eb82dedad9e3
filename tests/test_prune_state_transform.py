"""Pruning inside the engine: the pruner's state as the compression state, the generic
``masked_updates`` wrapper reading it. Same numbers as ``masked_optimizer`` (bitwise),
jit and not, linen and NNX, distillation's student subtree, checkpoints, bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxcomp.distill as kd
from jaxcomp.core import paths, schedules
from jaxcomp.core.errors import ConfigError
from jaxcomp.core.transform import Transform
from jaxcomp.data import synthetic
from jaxcomp.models import get_model
from jaxcomp.prune import (
    dst,
    get_masks,
    magnitude,
    masked_optimizer,
    masked_updates,
    pruner,
    pruning_optimizer,
    pruning_transform,
)
from jaxcomp.train import create_state, fit, make_train_step, train_step_fn
from tests.test_prune_optax import assert_masks_survive_checkpoint

D, K = 6, 3
X = jnp.asarray(np.random.default_rng(0).normal(size=(32, D)), jnp.float32)
Y = jnp.asarray(np.arange(32) % K, jnp.int32)


def _pruners():
    sched = schedules.polynomial(0.0, 0.75, begin=1, end=7, frequency=2)
    return {"magnitude": lambda: pruner("magnitude", sched),
            "snip": lambda: pruner("snip", schedules.one_shot(0.6, at=2), gate=(2, 2, 1)),
            "movement": lambda: pruner("movement", sched),
            "random": lambda: pruner("random", sched),
            "rigl": lambda: dst.rigl(0.5, drop_fraction=0.5, every=2, end=9),
            "set": lambda: dst.set_(0.5, drop_fraction=0.5, every=2, end=9)}


def _train(model, tx, transform, steps, use_jit, params):
    step = train_step_fn(model, tx, transform)
    step = jax.jit(step) if use_jit else step
    state = create_state(jax.tree.map(jnp.copy, params), {}, tx, key=jax.random.key(3),
                         transform=transform)
    for i in range(steps):
        sl = slice(8 * (i % 4), 8 * (i % 4) + 8)
        state, _ = step(state, {"x": X[sl], "y": Y[sl]})
    return state


# every pruner jitted; eagerly (op by op, each lax.cond branch compiled per call: slow)
# one that only shrinks and one that regrows
@pytest.mark.parametrize("name, use_jit", [(n, True) for n in _pruners()]
                         + [("magnitude", False), ("rigl", False)])
def test_same_numbers_as_masked_optimizer(name, use_jit):
    model = get_model("mlp", input_shape=(D,), num_classes=K, features=(16,))
    params, _ = model.init(jax.random.key(0), X[:1])
    make = _pruners()[name]
    ref_tx = masked_optimizer(optax.adam(0.05), make(), seed=4)
    ref = _train(model, ref_tx, None, 10, use_jit, params)
    t = pruning_transform(make(), seed=4)
    new = _train(model, pruning_optimizer(optax.adam(0.05), t), t, 10, use_jit, params)
    for a, b in zip(jax.tree.leaves(ref.params), jax.tree.leaves(new.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    ref_m, new_m = get_masks(ref.opt_state), get_masks(new.comp_state)
    assert set(ref_m) == set(new_m) and any((~np.asarray(m)).any() for m in new_m.values())
    for p, m in new_m.items():
        np.testing.assert_array_equal(np.asarray(m), np.asarray(ref_m[p]))
        w = np.asarray(new.params[p.split("/")[0]]["kernel"])
        assert np.all(w[~np.asarray(m)] == 0.0)  # exactly zero where pruned


@pytest.mark.parametrize("use_jit", [True, False])
def test_apply_zeroes_pruned_with_a_dense_gradient(use_jit):
    w = jnp.asarray(np.random.default_rng(1).normal(size=(4, 5)), jnp.float32)
    t = pruning_transform(magnitude(0.4))
    state = t.update({"w": w}, t.init({"w": w}), step=0)
    mask = np.asarray(state["pruner"]["masks"]["w"])
    c = jnp.arange(20.0).reshape(4, 5)

    def f(p):
        return jnp.sum(t.apply(p, state)["w"] * c)

    fn = jax.jit(jax.value_and_grad(f)) if use_jit else jax.value_and_grad(f)
    val, g = fn({"w": w})
    ref = np.where(mask, np.asarray(w), 0.0)
    np.testing.assert_array_equal(np.asarray(t.apply({"w": w}, state)["w"]), ref)
    np.testing.assert_allclose(float(val), float((ref * np.asarray(c)).sum()), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(g["w"]), np.asarray(c))  # not masked
    assert (~mask).sum() == 8


@pytest.mark.parametrize("kind", ["linen", "nnx"])
def test_fit_linen_and_nnx_masks_in_comp_state_and_checkpoint(kind, tmp_path):
    ds = synthetic(num_train=256, num_test=64)
    name = "mlp" if kind == "linen" else "nnx_mlp"
    model = get_model(name, input_shape=ds.input_shape, num_classes=4, features=(16,))
    sched = schedules.polynomial(0.0, 0.75, begin=0, end=8, frequency=4)
    t = pruning_transform(pruner("magnitude", sched, allocation="global"))
    res = fit(model, ds, pruning_optimizer(optax.adam(1e-2), t), epochs=2, batch_size=32,
              seed=0, transform=t, progress=False)
    masks = get_masks(res.state.comp_state)
    total = sum(int(m.size) for m in masks.values())
    assert sum(int((~m).sum()) for m in masks.values()) == round(0.75 * total)
    by_path = paths.path_dict(res.state.params)
    for p, m in masks.items():
        assert np.all(np.asarray(by_path[p])[~np.asarray(m)] == 0.0)
    assert_masks_survive_checkpoint(res.state, masks, "comp_state", tmp_path)


def test_distiller_prunes_the_student_subtree():
    s = get_model("mlp", input_shape=(D,), num_classes=K, features=(8, 5))
    teacher = get_model("mlp", input_shape=(D,), num_classes=K, features=(16, 5))
    tv = teacher.init(jax.random.key(1), X[:1])
    t = pruning_transform(magnitude(0.5))
    tx = pruning_optimizer(optax.adam(1e-2), t, prefix="student")
    d = kd.distiller(s, teacher, tx, method="kd", transform=t,
                     features=[kd.FeatureTerm("Dense_0", "Dense_0", "hint")])
    state = d.init(jax.random.key(0), X[:1], tv)
    for _ in range(3):
        state, _ = d.step(state, {"x": X[:8], "y": Y[:8], "loss_state": d.loss_state()}, tv)
    masks = get_masks(state.comp_state)
    assert set(masks) == {"Dense_0/kernel", "Dense_1/kernel", "Dense_2/kernel"}
    for p, m in masks.items():
        w = np.asarray(state.params["student"][p.split("/")[0]]["kernel"])
        assert abs((~np.asarray(m)).sum() - w.size / 2) <= 0.5
        assert np.all(w[~np.asarray(m)] == 0.0)
    assert np.all(np.asarray(state.params["proj"]["hint_0"]["kernel"]) != 0.0)
    bad = pruning_optimizer(optax.adam(1e-2), t)  # no prefix: the masks name no param
    d2 = kd.distiller(s, teacher, bad, method="kd", transform=t)
    st2 = d2.init(jax.random.key(0), X[:1], tv)
    with pytest.raises(ConfigError, match=r"masked_updates: masks for .*Dense_0/kernel.*"
                                          r"name no parameter.*prefix"):
        d2.step(st2, {"x": X[:8], "y": Y[:8], "loss_state": d2.loss_state()}, tv)


def test_bad_input_is_a_clear_error():
    params = {"w": jnp.ones((2, 2))}
    tx = masked_updates(optax.sgd(0.1))
    st = tx.init(params)
    with pytest.raises(ConfigError, match="comp_state holds no pruning masks.*pruning_transform"):
        tx.update(params, st, params, comp_state={"quant": {"bits": 8}})
    with pytest.raises(ConfigError, match="comp_state holds no pruning masks"):
        tx.update(params, st, params)
    with pytest.raises(ConfigError, match="update needs params"):
        tx.update(params, st)
    with pytest.raises(ConfigError, match="expected the MaskedUpdatesState"):
        tx.update(params, optax.sgd(0.1).init(params), params, comp_state={})
    with pytest.raises(ConfigError, match="masked_updates: tx is a ShrinkingPruner; expected"):
        masked_updates(magnitude(0.5))
    with pytest.raises(ConfigError, match=r"never_regrows: got 'yes'; expected a bool"):
        masked_updates(optax.sgd(0.1), never_regrows="yes")
    with pytest.raises(ConfigError, match=r"prefix got 3; expected a str"):
        masked_updates(optax.sgd(0.1), prefix=3)
    with pytest.raises(ConfigError, match="pruning_transform: pruner is a GradientTransformation"):
        pruning_transform(optax.sgd(0.1))
    with pytest.raises(ConfigError, match=r"pruning_transform: seed got 1.5; expected an int"):
        pruning_transform(magnitude(0.5), seed=1.5)
    with pytest.raises(ConfigError, match="pruning_optimizer: transform is a ShrinkingPruner"):
        pruning_optimizer(optax.sgd(0.1), magnitude(0.5))
    t = pruning_transform(magnitude(0.5))
    with pytest.raises(ConfigError, match=r"pruning_transform.apply: got .* as state"):
        t.apply(params, magnitude(0.5).init(params))
    with pytest.raises(ConfigError, match=r"pruning_transform.update: got .* as state"):
        t.update(params, (), step=0)
    assert pruning_transform(magnitude(0.5)).never_regrows
    assert not pruning_transform(dst.rigl(0.5)).never_regrows


def _engine(make):
    t = pruning_transform(make(), seed=2)
    return pruning_optimizer(optax.adam(0.05), t), t


def _bare(make):  # a pruner itself as the compression transform, plain optimizer
    return optax.adam(0.05), make()


def _wrapped(make):  # the standalone optimizer wrapper
    return masked_optimizer(optax.adam(0.05), make(), seed=2), None


@pytest.mark.parametrize("build", [_engine, _bare, _wrapped])
@pytest.mark.parametrize("make", [
    lambda: pruner("random", 0.5),
    lambda: pruner("magnitude", schedules.polynomial(0.0, 0.5, begin=0, end=4, frequency=2)),
    lambda: dst.rigl(0.5, drop_fraction=0.5, every=2, end=9),
], ids=["random", "magnitude", "rigl"])
def test_one_transform_trains_twice_with_donating_steps(make, build):
    """init gives fresh buffers: a first run's donated state does not delete the second
    run's (the lottery pattern reuses one transform for every round), whichever way the
    pruner is trained."""
    model = get_model("mlp", input_shape=(D,), num_classes=K, features=(16,))
    params, _ = model.init(jax.random.key(0), X[:1])
    tx, t = build(make)
    step = make_train_step(model, tx, t)  # donates its input state

    def run():
        state = create_state(jax.tree.map(jnp.copy, params), {}, tx, key=jax.random.key(3),
                             transform=t)
        for i in range(3):
            state, _ = step(state, {"x": X[8 * i:8 * i + 8], "y": Y[8 * i:8 * i + 8]})
        return state

    a = run()
    b = run()  # a key or gate shared between inits would be deleted by now
    for u, v in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


def _sparse_from_init():
    """A constant-sparsity magnitude pruner: its init masks prune already."""
    return pruning_transform(magnitude(0.5), seed=1)


def _projected_start():
    """``(model, params, t, tx, state)``: a sparse-from-init pruning run's start, built by
    create_state from a copy of ``params`` (which stay dense)."""
    model = get_model("mlp", input_shape=(D,), num_classes=K, features=(16,))
    params, _ = model.init(jax.random.key(0), X[:1])
    t = _sparse_from_init()
    tx = pruning_optimizer(optax.adam(0.05), t)
    state = create_state(jax.tree.map(jnp.copy, params), {}, tx, key=jax.random.key(3),
                         transform=t)
    return model, params, t, tx, state


def _pruned(state):
    by_path = paths.path_dict(state.params)
    return {p: np.asarray(by_path[p])[~np.asarray(m)] for p, m in
            get_masks(state.comp_state).items()}


@pytest.mark.parametrize("use_jit", [True, False])
def test_the_train_forward_skips_the_mask_on_a_projected_state(use_jit):
    """create_state zeroes pruned weights (the caller's params stay dense); the train
    step's forward then uses the params as they are, with the numbers of a forward that
    masks every step (the same transform without train_apply)."""
    model, params, t, tx, start = _projected_start()
    masking = Transform(t.init, t.apply, t.update)  # masks in every forward
    assert t.train_apply is not None and masking.train_apply is None
    pruned = _pruned(start)
    assert sum(v.size for v in pruned.values()) > 0
    assert all(np.all(v == 0.0) for v in pruned.values())
    assert np.all(np.asarray(params["Dense_0"]["kernel"]) != 0)  # the caller's: not zeroed
    finals = []
    for transform in (t, masking):
        step = train_step_fn(model, tx, transform)
        step = jax.jit(step) if use_jit else step
        state = create_state(jax.tree.map(jnp.copy, params), {}, tx, key=jax.random.key(3),
                             transform=transform)
        for i in range(4):
            state, m = step(state, {"x": X[8 * i:8 * i + 8], "y": Y[8 * i:8 * i + 8]})
        finals.append((state, float(m["loss"])))
    (a, la), (b, lb) = finals
    assert la == lb
    for u, v in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


def test_a_hand_replaced_state_is_found_by_checked_mode_and_mended_by_projected():
    import jaxcomp as jc
    from jaxcomp.train import projected

    model, params, t, tx, state = _projected_start()
    rewound = state._replace(params=jax.tree.map(jnp.copy, params))  # dense, by hand
    step = jc.core.checked(make_train_step(model, tx, t, donate=False))
    batch = {"x": X[:8], "y": Y[:8]}
    with pytest.raises(ConfigError, match=r"pruning_transform: params 'Dense_0/kernel' .*"
                                          r"projected\): \d+ non-zero value\(s\) \(checked"):
        step(rewound, batch)
    mended = projected(rewound, t)
    assert all(np.all(v == 0.0) for v in _pruned(mended).values())
    assert np.all(np.asarray(rewound.params["Dense_0"]["kernel"]) != 0.0)  # not changed
    new, _ = step(mended, batch)  # passes the check
    assert int(new.step) == 1


def test_fit_projects_a_given_state():
    """fit(state=...) trains a hand-built state as create_state would have built it."""
    ds = synthetic(num_train=64, num_test=32, shape=(D,), num_classes=K)
    model, params, t, tx, built = _projected_start()
    by_hand = built._replace(params=jax.tree.map(jnp.copy, params))
    runs = [fit(model, ds, tx, state=s, epochs=1, batch_size=16, transform=t, progress=False)
            for s in (built, by_hand)]
    assert np.any(np.asarray(by_hand.params["Dense_0"]["kernel"]) != 0.0)  # caller's kept
    for u, v in zip(jax.tree.leaves(runs[0].state.params), jax.tree.leaves(runs[1].state.params),
                    strict=True):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


def test_a_chain_skips_the_mask_only_where_pruning_sees_the_raw_params():
    from jaxcomp.core.transform import forward_fn, named_chain, stateless
    from jaxcomp.quant import weight_quant

    t = pruning_transform(magnitude(0.5))
    tx = pruning_optimizer(optax.sgd(0.1), t)
    first = named_chain(("prune", t), ("quant", weight_quant(8)))
    assert first.project is not None and first.train_apply is not None
    double = stateless(lambda p: jax.tree.map(lambda w: 2 * w, p))
    later = named_chain(("double", double), ("prune", t))
    assert later.project is None and later.train_apply is None
    w = {"w": jnp.asarray(np.random.default_rng(2).normal(size=(4, 6)), jnp.float32)}
    s = first.init(w)
    s = first.update(w, s, step=0)
    p = first.project(w, s)
    np.testing.assert_array_equal(np.asarray(forward_fn(first, tx)(p, s)["w"]),
                                  np.asarray(first.apply(w, s)["w"]))
    s2 = later.update(w, later.init(w), step=0)
    np.testing.assert_array_equal(np.asarray(forward_fn(later, tx)(w, s2)["w"]),
                                  np.asarray(later.apply(w, s2)["w"]))


def test_the_mask_stays_unless_the_optimizer_keeps_pruned_weights_at_zero():
    """A pruning transform trained with an optimizer that does not mask (plain optax, or
    the masked one wrapped in another optax wrapper) keeps the forward mask: the pruned
    weights drift under dense updates, and the forward still sees them at zero."""
    from jaxcomp.core.transform import forward_fn

    t = pruning_transform(magnitude(0.5))
    marked = pruning_optimizer(optax.sgd(0.1), t)
    assert forward_fn(t, marked) is t.train_apply
    for tx in (optax.sgd(0.1), optax.apply_if_finite(marked, 2), None):
        assert forward_fn(t, tx) is t.apply
    model = get_model("mlp", input_shape=(D,), num_classes=K, features=(16,))
    params, _ = model.init(jax.random.key(0), X[:1])
    tx = optax.sgd(0.1)
    state = create_state(jax.tree.map(jnp.copy, params), {}, tx, key=jax.random.key(3),
                         transform=t)
    step = make_train_step(model, tx, t)
    for i in range(2):
        state, m = step(state, {"x": X[8 * i:8 * i + 8], "y": Y[8 * i:8 * i + 8]})
    assert any(np.any(v != 0.0) for v in _pruned(state).values())  # dense updates
    eff = t.apply(state.params, state.comp_state)
    logits, _ = model.apply(eff, {}, X[16:24])
    ref, _ = model.apply(state.params, {}, X[16:24])
    assert not np.allclose(np.asarray(logits), np.asarray(ref))  # the mask matters here
    _, m2 = make_train_step(model, tx, t, donate=False)(state, {"x": X[16:24], "y": Y[16:24]})
    want = optax.softmax_cross_entropy_with_integer_labels(logits, Y[16:24]).mean()
    np.testing.assert_allclose(float(m2["loss"]), float(want), rtol=1e-6)
