"""Surgery: the shrunk model computes what the masked model computes, and is smaller."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcomp.core.errors import ConfigError
from jaxcomp.flax import from_linen
from jaxcomp.models import get_model
from jaxcomp.prune.channels import channel_masks, count_params
from jaxcomp.prune.groups import dependency_groups
from jaxcomp.prune.surgery import masked_params, rebuild_linen, shrink, slice_tree

REFERENCE = [("lenet300", (28, 28, 1)), ("lenet5", (16, 16, 1)),
             ("lenet5_caffe", (16, 16, 1)), ("rescnn", (8, 8, 1)), ("dscnn", (8, 8, 1)),
             ("nnx_mlp", (6, 6, 1)), ("nnx_cnn", (8, 8, 1))]


def user_mlp():
    return from_linen(nn.Sequential([nn.Dense(16), nn.relu, nn.Dense(8), nn.relu, nn.Dense(3)]),
                      "user_mlp"), (10,)


def user_cnn():
    flat = lambda x: x.reshape((x.shape[0], -1))  # noqa: E731
    seq = nn.Sequential([nn.Conv(8, (3, 3)), nn.relu, nn.Conv(6, (3, 3), padding="VALID"),
                         nn.relu, lambda x: nn.max_pool(x, (2, 2), (2, 2)), flat,
                         nn.Dense(12), nn.relu, nn.Dense(3)])
    return from_linen(seq, "user_cnn"), (8, 8, 2)


_MODELS = {}


def _build(name):
    if name not in _MODELS:
        if name == "user_mlp":
            _MODELS[name] = user_mlp()
        elif name == "user_cnn":
            _MODELS[name] = user_cnn()
        else:
            shape = dict(REFERENCE)[name]
            kw = {"features": (10, 7)} if name == "mlp" else {}
            _MODELS[name] = get_model(name, input_shape=shape, num_classes=5, **kw), shape
    return _MODELS[name]


_CACHE = {}


def _perturbed(model, shape, seed=0):
    """Variables with non-trivial biases, BatchNorm scales and statistics (cached per model)."""
    key = (id(model), shape, seed)
    if key not in _CACHE:
        rng = np.random.default_rng(seed)
        x = jnp.asarray(rng.normal(size=(4, *shape)), jnp.float32)
        params, state = jax.jit(model.init)(jax.random.key(seed), x)
        bump = lambda a: (jnp.asarray(np.asarray(a) + 0.2 * np.abs(rng.normal(size=a.shape)),  # noqa
                                      a.dtype)
                          if a.ndim == 1 and jnp.issubdtype(a.dtype, jnp.floating) else a)
        _CACHE[key] = (x, jax.tree.map(bump, params), jax.tree.map(bump, state))
    return _CACHE[key]


def _random_keep(graph, seed):
    rng = np.random.default_rng(seed)
    keep = {}
    for name, g in graph.groups.items():
        n = max(1, g.size // 2)
        keep[name] = np.sort(rng.choice(g.size, n, replace=False))
    return keep


CASES = [(n, True) for n, _ in REFERENCE] + [("user_mlp", True), ("user_cnn", True)]
CASES += [("user_mlp", False), ("nnx_mlp", False)]  # op-by-op dispatch compiles every op


@pytest.mark.parametrize("name,use_jit", CASES)
def test_shrunk_equals_masked(name, use_jit):
    model, shape = _build(name)
    x, params, state = _perturbed(model, shape)
    graph = dependency_groups(model, params, state, x)
    assert graph.groups, "every test model has prunable groups"
    keep = _random_keep(graph, 0)
    small = shrink(model, params, state, x, keep=keep, graph=graph, verify=False)
    # Physically smaller: every grouped axis lost half its channels.
    assert count_params(small.params) < count_params(params)
    for g, idx in keep.items():
        assert small.widths[g] == len(idx) < graph.groups[g].size
        for m in graph.groups[g].members:
            tree = small.params if m.collection == "params" else small.model_state
            leaf = dict(_flat(tree))[m.path]
            full = graph.shapes[(m.collection, m.path)][m.axis]
            assert leaf.shape[m.axis] == full // graph.groups[g].size * len(idx)
    x2 = jnp.asarray(np.random.default_rng(9).normal(size=(3, *shape)), jnp.float32)

    def run(params, state, small_params, small_state, v):
        masked = model.apply(masked_params(params, graph, small.keep), state, v)[0]
        shrunk = small.model.apply(small_params, small_state, v)[0]
        return masked, shrunk, model.apply(params, state, v)[0]

    if use_jit:  # one compile for all three
        run = jax.jit(run)
    a, b, full = run(params, state, small.params, small.model_state, x2)
    assert b.shape == a.shape
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-5, rtol=0)
    # And the unmasked model really differs (the removed channels mattered).
    assert float(jnp.max(jnp.abs(full - a))) > 1e-4


def _flat(tree):
    from jaxcomp.core import paths

    return paths.flatten(tree)


def test_lenet5_flatten_couples_conv_channels_with_dense_rows():
    model, shape = _build("lenet5")
    x, params, state = _perturbed(model, shape)
    graph = dependency_groups(model, params, state, x)
    (m,) = [m for m in graph.groups["Conv_1/kernel"].members if m.path == "Dense_0/kernel"]
    assert m.factors == ((None, 2), (None, 2), ("Conv_1/kernel", 16))  # (H, W, C) rows
    small = shrink(model, params, state, x, keep={"Conv_1/kernel": [0, 3, 5]})
    # Rows of Dense_0 are (h, w, c) flattened with c fastest: keep c in {0, 3, 5}.
    h_w = graph.shapes[("params", "Dense_0/kernel")][0] // 16
    rows = (np.arange(h_w)[:, None] * 16 + np.array([0, 3, 5])[None]).reshape(-1)
    np.testing.assert_array_equal(small.params["Dense_0"]["kernel"],
                                  params["Dense_0"]["kernel"][rows])


def test_residual_channels_are_one_group():
    model, shape = _build("rescnn")
    x, params, state = _perturbed(model, shape)
    graph = dependency_groups(model, params, state, x)
    coupled = {m.path for m in graph.groups["block0/conv2/kernel"].producers}
    assert {"stem/kernel", "block0/conv2/kernel", "stem_bn/scale", "block0/bn2/bias"} <= coupled
    stats = {m.path for m in graph.groups["block0/conv2/kernel"].members
             if m.collection == "state"}
    assert "batch_stats/stem_bn/mean" in stats
    # The head's input and the classes are never prunable.
    assert not any(m.path == "head/kernel" and m.axis == 1
                   for g in graph.groups.values() for m in g.members)


def test_rebuilt_mlp_module_matches_shrunk():
    model, shape = _build("lenet300")
    x, params, state = _perturbed(model, shape)
    small = shrink(model, params, state, x, sparsity=0.5, verify=False)
    assert small.widths == {"Dense_0/kernel": 150, "Dense_1/kernel": 50}
    rebuilt = rebuild_linen(model, small)
    assert rebuilt.module.features == (150, 50)
    a = rebuilt.apply(small.params, small.model_state, x)[0]
    b = small.model.apply(small.params, small.model_state, x)[0]
    np.testing.assert_allclose(a, b, atol=1e-6)
    # any other linen model: its own module with the new widths (here nn.Sequential)
    umodel, ushape = _build("user_mlp")
    ux, uparams, ustate = _perturbed(umodel, ushape)
    usmall = shrink(umodel, uparams, ustate, ux, sparsity=0.5)
    urebuilt = rebuild_linen(umodel, usmall)
    assert urebuilt.init(jax.random.key(0), ux)[0]["layers_2"]["kernel"].shape == (8, 4)
    np.testing.assert_allclose(urebuilt.apply(usmall.params, usmall.model_state, ux)[0],
                               usmall.model.apply(usmall.params, usmall.model_state, ux)[0],
                               atol=1e-6)
    nsmall = shrink(*_build("nnx_mlp")[:1], *_perturbed(*_build("nnx_mlp"))[1:],
                    _perturbed(*_build("nnx_mlp"))[0], sparsity=0.5)
    with pytest.raises(ConfigError, match="not a linen model"):
        rebuild_linen(_build("nnx_mlp")[0], nsmall)


def test_shrunk_trains_like_the_masked_model():
    """Train-mode outputs, updated BatchNorm statistics and gradients of the shrunk model
    equal the masked model's at the kept channels."""
    model, shape = _build("rescnn")
    x, params, state = _perturbed(model, shape)
    small = shrink(model, params, state, x, sparsity=0.5)
    mp = masked_params(params, small.graph, small.keep)

    def both(m):
        def f(p, s):
            out, new_s = m.apply(p, s, x, train=True)
            return jnp.sum(out ** 2), (out, new_s)
        return jax.jit(jax.value_and_grad(f, has_aux=True))

    (_, (a_out, a_state)), a_grad = both(model)(mp, state)
    (_, (b_out, b_state)), b_grad = both(small.model)(small.params, small.model_state)
    np.testing.assert_allclose(b_out, a_out, atol=1e-5)
    for want, got in ((slice_tree(a_state, "state", small.graph, small.keep), b_state),
                      (slice_tree(a_grad, "params", small.graph, small.keep), b_grad)):
        for (pa, va), (pb, vb) in zip(_flat(want), _flat(got), strict=True):
            assert pa == pb
            np.testing.assert_allclose(vb, va, atol=1e-4, rtol=1e-4, err_msg=pa)
    p2, _ = small.model.init(jax.random.key(3), x)
    assert jax.tree.map(jnp.shape, p2) == jax.tree.map(jnp.shape, small.params)


def test_shrink_from_masks_and_sparsity_agree():
    model, shape = _build("lenet5")
    x, params, state = _perturbed(model, shape)
    graph = dependency_groups(model, params, state, x)
    masks = channel_masks(params, graph, 0.5, norm="l2")
    a = shrink(model, params, state, x, masks=masks, graph=graph)
    b = shrink(model, params, state, x, sparsity=0.5, norm="l2", graph=graph, verify=False)
    assert a.widths == b.widths
    for g in a.keep:
        np.testing.assert_array_equal(a.keep[g], b.keep[g])


def test_zero_breaking_activation_is_refused():
    seq = nn.Sequential([nn.Dense(8), nn.sigmoid, nn.Dense(3)])
    model = from_linen(seq, "sigmoid_mlp")
    x = jax.random.normal(jax.random.key(0), (4, 5))
    params, state = model.init(jax.random.key(1), x)
    with pytest.raises(ConfigError, match="maps a pruned"):
        shrink(model, params, state, x, sparsity=0.5)


def test_reductions_over_channels_block_the_group():
    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = nn.relu(nn.Dense(8)(x))
            h = nn.LayerNorm()(h)  # mean over the 8 channels: not removable
            return nn.Dense(3)(nn.relu(nn.Dense(6)(h)))

    model = from_linen(Net(), "ln")
    x = jnp.ones((2, 5))
    params, state = model.init(jax.random.key(0), x)
    graph = dependency_groups(model, params, state, x)
    assert list(graph.groups) == ["Dense_2/kernel"]  # Dense(3) is created first: Dense_1


def test_bad_keep_raises():
    model, shape = _build("user_mlp")
    x, params, state = _perturbed(model, shape)
    graph = dependency_groups(model, params, state, x)
    with pytest.raises(ConfigError, match="unknown group"):
        shrink(model, params, state, x, keep={"layers_0/kernle": [0]}, graph=graph)
    with pytest.raises(ConfigError, match="keeps no channel"):
        shrink(model, params, state, x, keep={"layers_0/kernel": []}, graph=graph)
    with pytest.raises(ConfigError, match=r"indices must lie in 0\.\.15"):
        shrink(model, params, state, x, keep={"layers_0/kernel": [16]}, graph=graph)
    with pytest.raises(ConfigError, match="exactly one"):
        shrink(model, params, state, x, graph=graph)
    bad = jax.tree.map(jnp.ones_like, params)
    bad["layers_2"]["kernel"] = jnp.ones((3, 3))
    with pytest.raises(ConfigError, match=r"masks\['layers_2/kernel'\].*\(3, 3\)"):
        shrink(model, params, state, x, masks=bad, graph=graph)
    with pytest.raises(ConfigError, match=r"sparsity.*\[0, 1\)"):
        shrink(model, params, state, x, sparsity=1.0, graph=graph)
