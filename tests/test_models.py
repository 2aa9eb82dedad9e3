"""Reference models: shapes, parameter counts, linen/NNX twins and train/eval modes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcomp.core import ConfigError
from jaxcomp.experiment.ledger import count_params
from jaxcomp.models import MODELS, get_model

X = jnp.ones((2, 28, 28, 1))


@pytest.mark.parametrize("name", [n for n in MODELS if n != "gpt"])  # gpt: tests/test_gpt.py
def test_every_model_runs(name):
    m = get_model(name, input_shape=(28, 28, 1), num_classes=10)
    params, state = m.init(jax.random.key(0), X)
    out, new_state = m.apply(params, state, X, train=True, rng=jax.random.key(1))
    assert out.shape == (2, 10)
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    out_eval, _ = m.apply(params, state, X, train=False)
    assert np.all(np.isfinite(out_eval))


def test_lenet300_param_count():
    m = get_model("lenet300", input_shape=(28, 28, 1))
    params, _ = m.init(jax.random.key(0), X)
    assert count_params(params) == 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10


def test_lenet5_variants():
    for name, c in [("lenet5", (6, 16)), ("lenet5_caffe", (20, 50))]:
        params, _ = get_model(name, input_shape=(28, 28, 1)).init(jax.random.key(0), X)
        assert params["Conv_0"]["kernel"].shape[-1] == c[0]
        assert params["Conv_1"]["kernel"].shape[-1] == c[1]


def test_nnx_mlp_matches_linen_mlp_given_same_weights():
    lin = get_model("lenet300", input_shape=(28, 28, 1))
    nx = get_model("nnx_mlp", input_shape=(28, 28, 1))
    lp, _ = lin.init(jax.random.key(0), X)
    npar, ns = nx.init(jax.random.key(1), X)
    for i in range(3):
        npar["layers"][i]["kernel"].set_value(lp[f"Dense_{i}"]["kernel"])
        npar["layers"][i]["bias"].set_value(lp[f"Dense_{i}"]["bias"])
    x = jax.random.normal(jax.random.key(2), (4, 28, 28, 1))
    np.testing.assert_allclose(lin.apply(lp, {}, x)[0], nx.apply(npar, ns, x)[0], atol=1e-5)


def test_batchnorm_stats_update_only_in_training():
    m = get_model("rescnn", input_shape=(28, 28, 1))
    params, state = m.init(jax.random.key(0), X)
    x = jax.random.normal(jax.random.key(1), (4, 28, 28, 1))
    _, s_train = m.apply(params, state, x, train=True)
    _, s_eval = m.apply(params, state, x, train=False)
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state, s_train)
    assert any(jax.tree.leaves(changed))
    assert all(not c for c in jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.any(a != b)),
                                                           state, s_eval)))


def test_cnn_needs_images():
    with pytest.raises(ConfigError, match="image inputs"):
        get_model("lenet5", input_shape=(40,))
