"""Linen/NNX adapters and module interception by path."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxcomp.core import ConfigError
from jaxcomp.flax import from_linen, from_nnx, intercept_linen, intercept_nnx
from jaxcomp.models.cnn import NNXCNN
from jaxcomp.models.mlp import MLP, NNXMLP


def record_hook(store):
    def hook(path, module, args, kwargs, call_next):
        out = call_next(*args, **kwargs)
        store[path] = out
        return out
    return hook


def test_linen_intercept_captures_and_can_modify():
    m = MLP(features=(8,), num_classes=3)
    v = m.init(jax.random.key(0), jnp.ones((1, 4)))
    x = jax.random.normal(jax.random.key(1), (5, 4))
    seen = {}
    with intercept_linen([r"Dense_\d"], record_hook(seen)):
        out = m.apply(v, x)
    assert sorted(seen) == ["Dense_0", "Dense_1"]
    np.testing.assert_allclose(seen["Dense_1"], out)
    h = x @ v["params"]["Dense_0"]["kernel"] + v["params"]["Dense_0"]["bias"]
    np.testing.assert_allclose(seen["Dense_0"], h, atol=1e-5)

    def double_output(path, module, args, kwargs, call_next):
        return 2 * call_next(*args, **kwargs)

    with intercept_linen(["Dense_1"], double_output):
        out2 = m.apply(v, x)
    np.testing.assert_allclose(out2, 2 * out, atol=1e-5)


def test_linen_intercept_works_under_jit():
    m = MLP(features=(8,), num_classes=3)
    v = m.init(jax.random.key(0), jnp.ones((1, 4)))

    def scaled(path, module, args, kwargs, call_next):
        return call_next(*args, **kwargs) * 0.0

    @jax.jit
    def f(v, x):
        with intercept_linen(["Dense_1"], scaled):
            return m.apply(v, x)

    assert float(jnp.abs(f(v, jnp.ones((2, 4)))).sum()) == 0.0


def test_linen_unmatched_rule_is_error():
    m = MLP(features=(8,), num_classes=3)
    v = m.init(jax.random.key(0), jnp.ones((1, 4)))
    with pytest.raises(ConfigError, match="Conv_0.*nearest module paths"):
        with intercept_linen(["Dense_0", "Conv_0"], record_hook({})):
            m.apply(v, jnp.ones((1, 4)))


def test_nnx_intercept_and_restore():
    net = NNXMLP(4, (8,), 3, rngs=nnx.Rngs(0))
    x = jnp.ones((2, 4))
    seen = {}
    with intercept_nnx(net, [r"layers/\d"], record_hook(seen)):
        out = net(x)
    assert sorted(seen) == ["layers/0", "layers/1"]
    np.testing.assert_allclose(seen["layers/1"], out)
    assert type(net.layers[0]) is nnx.Linear  # class restored
    with pytest.raises(ConfigError, match="nope"):
        with intercept_nnx(net, ["nope"], record_hook({})):
            net(x)


def test_nnx_model_adapter_train_mode_updates_batchnorm():
    model = from_nnx(lambda rngs: NNXCNN(1, 4, 3, rngs=rngs))
    params, state = model.init(jax.random.key(0), None)
    x = jax.random.normal(jax.random.key(1), (4, 8, 8, 1))
    _, s_train = model.apply(params, state, x, train=True)
    _, s_eval = model.apply(params, state, x, train=False)
    diff = lambda a, b: any(jax.tree.leaves(jax.tree.map(lambda u, w: bool(jnp.any(u != w)),
                                                         a, b)))
    assert diff(state, s_train) and not diff(state, s_eval)


def test_nnx_and_linen_grads_through_adapter():
    lin = from_linen(nn.Dense(3))
    p, s = lin.init(jax.random.key(0), jnp.ones((1, 2)))
    g = jax.grad(lambda p: lin.apply(p, s, jnp.ones((1, 2)))[0].sum())(p)
    np.testing.assert_allclose(g["kernel"], np.ones((2, 3)))
    nx = from_nnx(lambda rngs: nnx.Linear(2, 3, rngs=rngs))
    p, s = nx.init(jax.random.key(0), None)
    g = jax.jit(jax.grad(lambda p: nx.apply(p, s, jnp.ones((1, 2)))[0].sum()))(p)
    np.testing.assert_allclose(g["kernel"][...], np.ones((2, 3)))
