"""Factorized layers (linen and NNX) and model conversion: outputs equal the
reconstructed dense model; fine-tuning through jaxcomp.train.fit."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxcomp.core.errors import ConfigError
from jaxcomp.data import synthetic
from jaxcomp.decompose import (
    CPConv,
    LowRankDense,
    TuckerConv,
    factorize,
    reconstruct_params,
)
from jaxcomp.decompose.blas import one_blas_thread
from jaxcomp.decompose.nnx_layers import factorize_nnx
from jaxcomp.models import get_model
from jaxcomp.models.cnn import NNXCNN
from jaxcomp.models.mlp import NNXMLP
from jaxcomp.train import fit
from jaxcomp.train.loop import init_state


@pytest.fixture(autouse=True)
def _one_blas_thread():
    with one_blas_thread():
        yield


def _conv(x, k, strides=(1, 1), padding="SAME"):
    return jax.lax.conv_general_dilated(x, k, strides, padding,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def test_linen_layers_param_shapes_and_math():
    x = jax.random.normal(jax.random.key(0), (2, 9, 9, 4))
    t = TuckerConv(features=6, kernel_size=(3, 3), ranks=(2, 3), strides=(2, 2))
    v = t.init(jax.random.key(1), x)["params"]
    assert jax.tree.map(jnp.shape, v) == {"first": (4, 2), "core": (3, 3, 2, 3),
                                         "last": (3, 6), "bias": (6,)}
    k = jnp.einsum("hwab,ia,bo->hwio", v["core"], v["first"], v["last"])
    np.testing.assert_allclose(t.apply({"params": v}, x), _conv(x, k, (2, 2)) + v["bias"],
                               atol=1e-5)
    c = CPConv(features=6, kernel_size=(3, 3), rank=5, padding="VALID")
    p = c.init(jax.random.key(2), x)["params"]
    k = jnp.einsum("hr,wr,ir,ro->hwio", p["vertical"], p["horizontal"], p["first"], p["last"])
    np.testing.assert_allclose(c.apply({"params": p}, x), _conv(x, k, padding="VALID"),
                               atol=1e-5)
    d = LowRankDense(features=3, rank=2)
    q = d.init(jax.random.key(3), jnp.ones((1, 5)))["params"]
    xd = jax.random.normal(jax.random.key(4), (4, 5))
    np.testing.assert_allclose(d.apply({"params": q}, xd), xd @ q["u"] @ q["v"], atol=1e-6)


@pytest.mark.parametrize("use_jit", [True, False])
@pytest.mark.parametrize("spec", [
    {"Conv_1": {"method": "tucker2", "rank": [3, 6]}, "Dense_0": {"method": "svd", "rank": 8}},
    {"Conv_1/kernel": {"method": "cp", "rank": 12}},
])
def test_factorized_lenet5_matches_reconstructed_dense(spec, use_jit):
    m = get_model("lenet5", input_shape=(28, 28, 1))
    params, ms = m.init(jax.random.key(0), jnp.ones((1, 28, 28, 1)))
    f = factorize(m, params, spec, key=jax.random.key(1), n_iter=5)
    x = jax.random.normal(jax.random.key(2), (3, 28, 28, 1))
    fwd = (lambda mm: jax.jit(lambda p, x: mm.apply(p, ms, x)[0])) if use_jit else \
        (lambda mm: lambda p, x: mm.apply(p, ms, x)[0])
    y_fact = fwd(f.model)(f.params, x)
    y_dense = fwd(m)(reconstruct_params(f.params, f.spec), x)
    np.testing.assert_allclose(y_fact, y_dense, atol=1e-4, rtol=1e-4)
    # the factorized model's own init gives the same param structure and shapes
    p_init, _ = f.model.init(jax.random.key(3), x[:1])
    assert jax.tree.map(jnp.shape, p_init) == jax.tree.map(jnp.shape, f.params)


def test_factorized_rescnn_nested_strided_conv():
    m = get_model("rescnn", input_shape=(12, 12, 1))
    params, ms = m.init(jax.random.key(0), jnp.ones((1, 12, 12, 1)))
    spec = {"block1/conv1": {"method": "tucker2", "rank": [8, 16]},
            "block0/conv2": {"method": "cp", "rank": 6}}
    f = factorize(m, params, spec, key=jax.random.key(1), n_iter=3)
    x = jax.random.normal(jax.random.key(2), (2, 12, 12, 1))
    y_fact = jax.jit(lambda p: f.model.apply(p, ms, x)[0])(f.params)
    y_dense = jax.jit(lambda p: m.apply(p, ms, x)[0])(reconstruct_params(f.params, f.spec))
    np.testing.assert_allclose(y_fact, y_dense, atol=1e-4, rtol=1e-4)


def test_nnx_factorize_matches_reconstructed_dense():
    mlp = NNXMLP(16, (32,), 4, rngs=nnx.Rngs(0))
    f = factorize_nnx(mlp, {"layers/0": {"method": "svd", "rank": 5}})
    x = jax.random.normal(jax.random.key(1), (3, 16))
    u, v = f.layers[0].u[...], f.layers[0].v[...]
    w = np.asarray(mlp.layers[0].kernel[...], np.float64)
    uu, s, vt = np.linalg.svd(w, full_matrices=False)
    np.testing.assert_allclose(u @ v, (uu[:, :5] * s[:5]) @ vt[:5], atol=1e-5)
    dense = nnx.clone(mlp)
    dense.layers[0].kernel[...] = u @ v
    np.testing.assert_allclose(f(x), dense(x), atol=1e-5)
    assert type(mlp.layers[0]).__name__ == "Linear"        # the original is untouched
    cnn = NNXCNN(1, 8, 4, rngs=nnx.Rngs(0))
    xc = jax.random.normal(jax.random.key(2), (2, 6, 6, 1))
    cnn.eval()
    for spec in ({"conv1": {"method": "tucker2", "rank": 4}},
                 {"conv1": {"method": "cp", "rank": 6}}):
        fc = factorize_nnx(cnn, spec, key=jax.random.key(3), n_iter=3)
        ref = nnx.clone(cnn)
        layer = fc.conv1
        if spec["conv1"]["method"] == "tucker2":
            k = jnp.einsum("hwab,ia,bo->hwio", layer.core[...], layer.first[...],
                           layer.last[...])
        else:
            k = jnp.einsum("hr,wr,ir,ro->hwio", layer.vertical[...], layer.horizontal[...],
                           layer.first[...], layer.last[...])
        ref.conv1.kernel[...] = k
        np.testing.assert_allclose(fc(xc), ref(xc), atol=1e-4)


def test_finetune_factorized_model_with_fit():
    ds = synthetic(num_train=256, num_test=128)
    m = get_model("mlp", input_shape=ds.input_shape, num_classes=4, features=(32,))
    res = fit(m, ds, optax.adam(1e-2), epochs=2, batch_size=32, seed=0, progress=False)
    f = factorize(m, res.state.params, {"Dense_0": {"method": "svd", "rank": 2}})
    tx = optax.adam(1e-2)
    st = init_state(f.model, ds, tx, seed=0, params=jax.tree.map(jnp.copy, f.params),
                    model_state={})
    before = jax.tree.map(np.asarray, f.params)
    out = fit(f.model, ds, tx, epochs=2, batch_size=32, state=st, progress=False)
    after = out.state.params
    assert set(after["Dense_0"]) == {"u", "v", "bias"}
    assert not np.allclose(after["Dense_0"]["u"], before["Dense_0"]["u"])   # factors train
    assert out.history[-1]["train_loss"] <= out.history[0]["train_loss"] + 1e-6


def test_factorize_errors_name_the_layer():
    m = get_model("lenet5", input_shape=(28, 28, 1))
    params, _ = m.init(jax.random.key(0), jnp.ones((1, 28, 28, 1)))
    with pytest.raises(ConfigError, match=r"Conv_1/kernel \(input channels\): rank got 7"):
        factorize(m, params, {"Conv_1": {"method": "tucker2", "rank": [7, 4]}})
    with pytest.raises(ConfigError, match=r"Dense_0/kernel: Tucker-2 needs a 4-D kernel"):
        factorize(m, params, {"Dense_0": {"method": "tucker2", "rank": 2}})
    with pytest.raises(ConfigError, match=r"Conv_1/kernel: rank got 0"):
        factorize(m, params, {"Conv_1": {"method": "cp", "rank": 0}}, key=jax.random.key(0))
    with pytest.raises(ConfigError, match=r"Conv_1/kernel: CP initialization needs"):
        factorize(m, params, {"Conv_1": {"method": "cp", "rank": 3}})
    with pytest.raises(ConfigError, match=r"'Conv_9' is not a layer.*Conv_1"):
        factorize(m, params, {"Conv_9": {"method": "cp", "rank": 3}}, key=jax.random.key(0))
    with pytest.raises(ConfigError, match=r"Conv_1: method: got 'svdd'"):
        factorize(m, params, {"Conv_1": {"method": "svdd", "rank": 3}})
    with pytest.raises(ConfigError, match=r"Dense_0/kernel: rank got 400; allowed range"):
        factorize(m, params, {"Dense_0": {"method": "svd", "rank": 400}})


def test_nnx_factorize_refuses_a_layer_that_is_not_linear_or_conv():
    class WithNorm(nnx.Module):
        def __init__(self, rngs):
            self.dense = nnx.Linear(8, 8, rngs=rngs)
            self.norm = nnx.BatchNorm(8, rngs=rngs)

    with pytest.raises(ConfigError, match=r"norm: BatchNorm is not nnx\.Linear or nnx\.Conv"):
        factorize_nnx(WithNorm(nnx.Rngs(0)), {"norm": {"method": "svd", "rank": 2}})


def test_nnx_factorize_refuses_nan_weights_naming_the_layer():
    mlp = NNXMLP(16, (32,), 4, rngs=nnx.Rngs(0))
    mlp.layers[0].kernel[...] = mlp.layers[0].kernel[...].at[0, 0].set(jnp.nan)
    with pytest.raises(ConfigError, match=r"layers/0/kernel: has 1 NaN/inf"):
        factorize_nnx(mlp, {"layers/0": {"method": "svd", "rank": 5}})
