"""Lottery tickets: exact IMP counts, rewinding, controls, fixed-mask transform, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcomp.core.errors import ConfigError
from jaxcomp.prune import lottery


def _params(seed=0):
    rng = np.random.default_rng(seed)
    return {"Dense_0": {"kernel": jnp.asarray(rng.normal(size=(20, 10)), jnp.float32),
                        "bias": jnp.zeros(10)},
            "Dense_1": {"kernel": jnp.asarray(rng.normal(size=(10, 4)), jnp.float32),
                        "bias": jnp.zeros(4)}}


def test_rates_give_the_output_layer_its_own_rate():
    rates = lottery.lottery_rates(_params(), 0.2, 0.1)
    assert rates == {"Dense_0/kernel": 0.2, "Dense_1/kernel": 0.1}
    assert lottery.lottery_rates(_params(), 0.3, None) == {"Dense_0/kernel": 0.3,
                                                           "Dense_1/kernel": 0.3}


@pytest.mark.parametrize("use_jit", [True, False])
def test_prune_round_keeps_largest_survivors_like_numpy(use_jit):
    params = _params()
    rates = lottery.lottery_rates(params, 0.2, 0.1)
    masks = lottery.full_masks(params, rates)
    fn = lottery.prune_round
    for _ in range(3):
        new = fn(params, masks, rates)
        for path, rate in rates.items():
            layer, leaf = path.split("/")
            w = np.abs(np.asarray(params[layer][leaf])).ravel()
            alive = np.asarray(masks[path]).ravel()
            k = int(round(alive.sum() * (1 - rate)))
            order = np.argsort(-np.where(alive, w, -1.0), kind="stable")
            ref = np.zeros_like(alive)
            ref[order[:k]] = True
            np.testing.assert_array_equal(np.asarray(new[path]).ravel(), ref)
        masks = new
    expected = (200 * 0.8 ** 3, 40 * 0.9 ** 3)
    got = [int(np.sum(np.asarray(m))) for m in masks.values()]
    assert all(abs(g - e) <= 2 for g, e in zip(got, expected, strict=True))
    if use_jit:  # the masks are plain arrays: usable in a jitted apply
        out = jax.jit(lottery.rewind)(params, masks)
        assert float(jnp.sum(out["Dense_0"]["kernel"] != 0)) == got[0]


def test_imp_rewinds_survivors_to_init_and_shrinks_geometrically():
    init = _params(0)
    seen = []

    def train(start, masks):
        seen.append((start, masks))
        # "training" moves weights deterministically; masked weights stay zero
        trained = jax.tree.map(lambda a: a * 1.5 + 0.1, start)
        return lottery.rewind(trained, masks), {"accuracy": 0.5}

    hist = lottery.iterative_magnitude_pruning(train, init, rounds=3, rate=0.5,
                                               output_rate=0.5)
    assert [h.round for h in hist] == [0, 1, 2, 3]
    np.testing.assert_allclose([h.remaining for h in hist], [1, 0.5, 0.25, 0.125], atol=0.01)
    for start, masks in seen[1:]:
        ref = lottery.rewind(init, masks)
        for a, b in zip(jax.tree.leaves(start), jax.tree.leaves(ref), strict=True):
            np.testing.assert_array_equal(a, b)
    # Late rewinding: survivors reset to the given checkpoint instead.
    ckpt = _params(7)
    seen.clear()
    lottery.iterative_magnitude_pruning(train, init, rounds=1, rewind_params=ckpt)
    np.testing.assert_array_equal(seen[1][0]["Dense_0"]["kernel"],
                                  lottery.rewind(ckpt, seen[1][1])["Dense_0"]["kernel"])


def test_random_masks_match_layerwise_counts():
    params = _params()
    rates = lottery.lottery_rates(params, 0.5, 0.25)
    masks = lottery.prune_round(params, lottery.full_masks(params, rates), rates)
    rnd = lottery.random_masks(jax.random.key(0), masks)
    for p in masks:
        assert int(np.sum(np.asarray(rnd[p]))) == int(np.sum(np.asarray(masks[p])))
    assert not np.array_equal(np.asarray(rnd["Dense_0/kernel"]),
                              np.asarray(masks["Dense_0/kernel"]))
    again = lottery.random_masks(jax.random.key(0), masks)
    np.testing.assert_array_equal(again["Dense_0/kernel"], rnd["Dense_0/kernel"])


def test_mask_transform_zeroes_weights_and_their_gradients():
    params = _params()
    rates = lottery.lottery_rates(params, 0.5, 0.5)
    masks = lottery.prune_round(params, lottery.full_masks(params, rates), rates)
    t = lottery.mask_transform(masks)
    state = t.init(params)
    eff = jax.jit(t.apply)(params, state)
    m = np.asarray(masks["Dense_0/kernel"])
    assert np.all(np.asarray(eff["Dense_0"]["kernel"])[~m] == 0)
    np.testing.assert_array_equal(np.asarray(eff["Dense_0"]["kernel"])[m],
                                  np.asarray(params["Dense_0"]["kernel"])[m])
    g = jax.grad(lambda p: jnp.sum(t.apply(p, state)["Dense_0"]["kernel"] ** 2))(params)
    assert np.all(np.asarray(g["Dense_0"]["kernel"])[~m] == 0)
    assert t.update(params, state, step=0) is state


def test_bad_inputs_raise_config_errors():
    params = _params()
    with pytest.raises(ConfigError, match=r"lottery.rate.*\[0, 1\)"):
        lottery.lottery_rates(params, 1.0)
    with pytest.raises(ConfigError, match=r"lottery.output_rate"):
        lottery.lottery_rates(params, 0.2, -0.1)
    with pytest.raises(ConfigError, match="lottery.rounds"):
        lottery.iterative_magnitude_pruning(lambda p, m: (p, {}), params, rounds=-1)
    bad = {"Dense_0/kernel": jnp.ones((3, 3), bool)}
    with pytest.raises(ConfigError, match="Dense_0/kernel.*shape"):
        lottery.prune_round(params, bad, {"Dense_0/kernel": 0.2})


def _doc_block(path, heading):
    """The first python block after ``heading`` in a markdown file."""
    import pathlib
    import re

    text = pathlib.Path(path).read_text()
    section = text[text.index(heading):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_lottery_pattern_from_the_docs_runs_with_fit():
    """The documented lottery pattern: a ``train`` built on ``fit`` from the caller's
    params, three rounds from the same ``init_params`` (fit must not donate them)."""
    import pathlib

    doc = pathlib.Path(__file__).resolve().parents[1] / "docs" / "surgery.md"
    namespace: dict = {}
    exec(compile(_doc_block(doc, "## Lottery tickets"), str(doc), "exec"), namespace)
    rounds, init_params = namespace["rounds"], namespace["init_params"]
    assert [r.round for r in rounds] == [0, 1, 2]
    assert [r.remaining for r in rounds] == sorted((r.remaining for r in rounds), reverse=True)
    assert rounds[2].remaining < rounds[1].remaining < 1.0
    for leaf in jax.tree.leaves(init_params):  # still alive and readable
        assert np.isfinite(np.asarray(leaf)).all()


@pytest.mark.parametrize("entry", ["fit", "fit_scan"])
def test_training_loops_leave_the_callers_state_alive(entry):
    import optax

    from jaxcomp.data import synthetic
    from jaxcomp.distill.epochs import fit_scan
    from jaxcomp.models import get_model
    from jaxcomp.train import fit, init_state

    ds = synthetic(num_train=128, num_test=64)
    model = get_model("mlp", input_shape=ds.input_shape, num_classes=4, features=(16,))
    p, _ = model.init(jax.random.key(0), ds.x_train[:1])
    before = jax.tree.map(np.asarray, p)
    state = init_state(model, ds, optax.sgd(0.1), seed=0, params=p)
    loop = fit if entry == "fit" else fit_scan
    kwargs = {"progress": False} if entry == "fit" else {}
    res = loop(model, ds, optax.sgd(0.1), epochs=1, batch_size=32, state=state, **kwargs)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), b), p, before)
    assert int(state.step) == 0 and int(res.state.step) == 4
    changed = jax.tree.map(lambda a, b: not np.array_equal(np.asarray(a), b),
                           res.state.params, before)
    assert any(jax.tree.leaves(changed))
