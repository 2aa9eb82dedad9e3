"""Structured masks: norms against numpy, coupled scores, traced/vmapped sparsity, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcomp.core.errors import ConfigError
from jaxcomp.models import get_model
from jaxcomp.prune import channels as ch
from jaxcomp.prune.groups import dependency_groups


@pytest.fixture(scope="module")
def mlp():
    model = get_model("mlp", input_shape=(9,), num_classes=3, features=(10, 6))
    x = jnp.ones((2, 9))
    params, state = jax.jit(model.init)(jax.random.key(0), x)
    return params, dependency_groups(model, params, state, x)


@pytest.fixture(scope="module")
def rescnn():
    model = get_model("rescnn", input_shape=(6, 6, 1), num_classes=3, channels=(4, 6))
    x = jnp.ones((2, 6, 6, 1))
    params, state = jax.jit(model.init)(jax.random.key(1), x)
    return params, dependency_groups(model, params, state, x)


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_scores_are_norms_of_output_slices(mlp, norm):
    params, graph = mlp
    scores = ch.group_scores(params, graph, norm=norm)
    w = np.asarray(params["Dense_0"]["kernel"])
    ref = np.abs(w).sum(0) if norm == "l1" else np.sqrt((w ** 2).sum(0))
    np.testing.assert_allclose(scores["Dense_0/kernel"], ref, rtol=1e-6)


def test_coupled_residual_scores_sum_over_producers(rescnn):
    params, graph = rescnn
    s = ch.group_scores(params, graph, norm="l1")["block0/conv2/kernel"]
    ref = sum(np.abs(np.asarray(params[a]["kernel"])).sum((0, 1, 2))
              for a in ("stem",)) + np.abs(np.asarray(
                  params["block0"]["conv2"]["kernel"])).sum((0, 1, 2))
    np.testing.assert_allclose(s, ref, rtol=1e-5)


@pytest.mark.parametrize("use_jit", [True, False])
def test_masks_zero_whole_units_and_their_biases(mlp, use_jit):
    params, graph = mlp
    fn = lambda p: ch.channel_masks(p, graph, 0.5, norm="l1", jit=False)  # noqa: E731
    masks = jax.jit(fn)(params) if use_jit else fn(params)
    w = np.asarray(params["Dense_0"]["kernel"])
    dropped = np.sort(np.argsort(np.abs(w).sum(0), kind="stable")[:5])
    m = np.asarray(masks["Dense_0"]["kernel"])
    assert np.all(m[:, dropped] == 0) and m.sum() == 9 * 5
    np.testing.assert_array_equal(np.nonzero(np.asarray(masks["Dense_0"]["bias"]) == 0)[0],
                                  dropped)
    # consumers (the next layer's rows) are left to surgery, not masked
    only0 = ch.channel_masks(params, graph, 0.5, where=["Dense_0/kernel"])
    assert np.all(np.asarray(only0["Dense_1"]["kernel"]) == 1)
    assert np.all(np.asarray(masks["Dense_2"]["kernel"]) == 1)  # output layer never pruned
    assert ch.keep_from_masks(masks, graph)["Dense_0/kernel"].sum() == 5


def test_batchnorm_scale_and_bias_follow_the_conv(rescnn):
    params, graph = rescnn
    masks = ch.channel_masks(params, graph, {"block1/conv1/kernel": 0.5})
    k = np.asarray(masks["block1"]["conv1"]["kernel"])
    off = np.nonzero(k.reshape(-1, 6).sum(0) == 0)[0]
    assert len(off) == 3
    for leaf in ("scale", "bias"):
        np.testing.assert_array_equal(
            np.nonzero(np.asarray(masks["block1"]["bn1"][leaf]) == 0)[0], off)
    assert np.all(np.asarray(masks["block0"]["conv1"]["kernel"]) == 1)


def test_vmap_over_sparsity_levels_equals_one_by_one(mlp):
    params, graph = mlp
    levels = jnp.array([0.0, 0.3, 0.5, 0.9])
    many = jax.vmap(lambda s: ch.channel_masks(params, graph, s, jit=False))(levels)
    for i, s in enumerate([0.0, 0.3, 0.5, 0.9]):
        one = ch.channel_masks(params, graph, s)
        for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(many), strict=True):
            np.testing.assert_array_equal(a, b[i])
    kept = [int(jnp.sum(many["Dense_0"]["bias"][i])) for i in range(4)]
    assert kept == [10, 7, 5, 1]


def test_unit_mask_and_keep_from_scores():
    w = jnp.asarray(np.random.default_rng(0).normal(size=(3, 3, 2, 8)), jnp.float32)
    m = ch.unit_mask(w, 0.25, axis=3, norm="l2")
    ref = np.sqrt((np.asarray(w) ** 2).sum((0, 1, 2)))
    off = np.sort(np.argsort(ref)[:2])
    np.testing.assert_array_equal(np.nonzero(np.asarray(m)[0, 0, 0] == 0)[0], off)
    m0 = ch.unit_mask(w, 0.5, axis=0)
    assert np.asarray(m0).reshape(3, -1).sum(1).tolist().count(0) == 1
    assert ch.keep_from_scores(jnp.array([1.0, 1.0, 1.0]), 0.99).sum() == 1  # >= 1 kept


@pytest.mark.parametrize("call,match", [
    (lambda w: ch.unit_mask(w, 0.5, axis=2, path="Dense_0/kernel"),
     r"Dense_0/kernel: channel axis 2 out of range.*allowed -2\.\.1"),
    (lambda w: ch.unit_mask(w, 1.0, path="Dense_0/kernel"),
     r"Dense_0/kernel: sparsity.*allowed range \[0, 1\)"),
    (lambda w: ch.unit_mask(w, -0.1), r"sparsity.*\[0, 1\)"),
    (lambda w: ch.unit_mask(w, 0.5, norm="l3"), r"norm.*'l1', 'l2'"),
])
def test_unit_mask_errors(call, match):
    with pytest.raises(ConfigError, match=match):
        call(jnp.ones((4, 5)))


def test_mask_errors(mlp):
    params, graph = mlp
    bad = jax.tree.map(jnp.ones_like, params)
    bad["Dense_1"]["kernel"] = jnp.ones((6, 10))
    with pytest.raises(ConfigError, match=r"masks\['Dense_1/kernel'\].*\(6, 10\).*\(10, 6\)"):
        ch.apply_masks(params, bad)
    with pytest.raises(ConfigError, match=r"sparsity\['Dense_0/kernel'\].*\[0, 1\)"):
        ch.channel_masks(params, graph, {"Dense_0/kernel": 1.5})
    with pytest.raises(ConfigError, match="not selected"):
        ch.channel_masks(params, graph, {"Dense_2/kernel": 0.5})
    with pytest.raises(ConfigError, match="matches no parameter path"):
        ch.channel_masks(params, graph, 0.5, where=["Conv_0/kernel"])
    with pytest.raises(ConfigError, match=r"keep\['Dense_0/kernel'\]: got shape"):
        ch.masks_from_keep(params, graph, {"Dense_0/kernel": jnp.ones(3, bool)})


@pytest.mark.parametrize("param_set", ["linen", "nnx"])
def test_channel_pruner_passes_conformance(param_set):
    from jaxcomp.flax import from_nnx
    from jaxcomp.models.mlp import NNXMLP
    from tests import conformance as conf

    d, *hidden, c = conf.MLP_SIZES
    if param_set == "linen":
        model = get_model("mlp", input_shape=(d,), num_classes=c, features=tuple(hidden))
    else:
        model = from_nnx(lambda rngs: NNXMLP(d, tuple(hidden), c, rngs=rngs))
    x = jnp.ones((1, d))
    params = conf.PARAM_SETS[param_set]()
    model.init(jax.random.key(0), x)  # NNX: builds the graphdef
    graph = dependency_groups(model, params, {} if param_set == "linen" else
                              model.init(jax.random.key(0), x)[1], x)
    assert len(graph.groups) == 2
    conf.check_transform(lambda: ch.channel_pruner(graph, 0.5), param_sets=(param_set,),
                         hparam_factory=lambda s: ch.channel_pruner(graph, s),
                         hparam_values=[0.25, 0.75])
    t = ch.channel_pruner(graph, 0.75)
    out = t.apply(params, t.init(params))
    first = dict(ch._paths.flatten(out))[list(graph.groups)[0]]
    assert int(jnp.sum(jnp.all(first == 0, axis=0))) == 24  # 75% of the 32 units removed
