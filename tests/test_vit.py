"""The ViT: shapes, patches by hand, pooling, registry errors, and training through fit."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxcomp.core import ConfigError
from jaxcomp.data import fashion_mnist
from jaxcomp.models import get_model
from jaxcomp.models.vit import ViT, patchify
from jaxcomp.train import evaluate, fit


def test_patchify_by_hand():
    x = jnp.arange(2 * 4 * 4 * 2, dtype=jnp.float32).reshape(2, 4, 4, 2)
    p = patchify(x, 2)
    assert p.shape == (2, 4, 8)
    np.testing.assert_array_equal(p[1, 3], np.asarray(x[1, 2:4, 2:4, :]).reshape(-1))


@pytest.mark.parametrize("patch,pool,use_jit", [(4, "cls", True), (7, "mean", False),
                                                (7, "cls", False)])
def test_shapes_and_pooling(patch, pool, use_jit):
    vit = ViT((28, 28, 1), patch=patch, pool=pool, width=32, num_layers=1, num_heads=2,
              rngs=nnx.Rngs(0))
    fwd = nnx.jit(lambda m, x: m(x)) if use_jit else (lambda m, x: m(x))
    x = jax.random.uniform(jax.random.key(1), (3, 28, 28, 1))
    out = fwd(vit, x)
    assert out.shape == (3, 10)
    assert vit.pos.shape == (1, (28 // patch) ** 2 + (pool == "cls"), 32)
    # no causal mask: the first image patch sees the last one
    changed = fwd(vit, x.at[:, -patch:, -patch:, :].set(0.0))
    assert np.abs(np.asarray(out - changed)).max() > 1e-5
    # images are independent of each other in the batch
    np.testing.assert_allclose(fwd(vit, x[:1]), out[:1], atol=1e-5)


def test_registry_errors():
    with pytest.raises(ConfigError, match="model.patch"):
        get_model("vit", input_shape=(28, 28, 1), patch=5)
    with pytest.raises(ConfigError, match="model.pool"):
        get_model("vit", input_shape=(28, 28, 1), pool="max")
    with pytest.raises(ConfigError, match="image inputs"):
        get_model("vit", input_shape=(64,))


def test_vit_trains_on_fashion_mnist_slice_above_chance():
    ds = fashion_mnist(download=False)
    ds = dataclasses.replace(ds, x_train=ds.x_train[:2048], y_train=ds.y_train[:2048],
                             x_test=ds.x_test[:512], y_test=ds.y_test[:512])
    model = get_model("vit", input_shape=ds.input_shape, num_classes=10, patch=7, width=32,
                      num_layers=1, num_heads=2, pool="mean")
    r = fit(model, ds, optax.adam(3e-3), epochs=2, batch_size=64, seed=0, progress=False)
    m = evaluate(model, r.state.params, r.state.model_state, ds.x_test, ds.y_test)
    assert m["accuracy"] > 0.5, m  # chance is 0.1
    assert r.history[-1]["test_accuracy"] == pytest.approx(m["accuracy"])
