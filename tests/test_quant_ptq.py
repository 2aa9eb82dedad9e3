"""PTQ and AdaRound on a trained small model (digits), and their error handling."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcomp.core.errors import ConfigError
from jaxcomp.data import digits
from jaxcomp.models import get_model
from jaxcomp.quant.adaround import adaround, rectified_sigmoid
from jaxcomp.quant.ptq import ptq
from jaxcomp.quant.transform import fake_quant_params
from jaxcomp.quant.uniform import minmax, qparams
from jaxcomp.train import evaluate, fit


@functools.cache
def trained():
    ds = digits()
    model = get_model("mlp", input_shape=ds.input_shape, num_classes=10, features=(32,))
    st = fit(model, ds, optax.adam(3e-3), epochs=6, batch_size=64, seed=0,
             progress=False).state
    return ds, model, st


def _acc(model, params, ms, ds):
    return evaluate(model, params, ms, ds.x_test, ds.y_test)["accuracy"]


def test_ptq_w8a8_close_to_float():
    ds, model, st = trained()
    fp = _acc(model, st.params, st.model_state, ds)
    q = ptq(model, st.params, st.model_state, [ds.x_train[:256], ds.x_train[256:512]],
            bits=8, act_bits=8)
    assert abs(_acc(q.model, q.params, q.model_state, ds) - fp) <= 0.02
    np.testing.assert_allclose(q.params["Dense_0"]["kernel"],
                               fake_quant_params(st.params, 8)["Dense_0"]["kernel"])
    with pytest.raises(ConfigError, match="at least 1"):
        ptq(model, st.params, st.model_state, [], bits=8, act_bits=8)


def test_adaround_beats_round_to_nearest_on_layer_loss():
    ds, model, st = trained()
    x = ds.x_train[:512]
    bits = 3
    q_ada = adaround(model, st.params, st.model_state, x, bits=bits, iters=300,
                     key=jax.random.key(0))
    q_rtn = fake_quant_params(st.params, bits)
    w = st.params["Dense_0"]["kernel"]
    xin = x.reshape(len(x), -1)
    err = lambda q: float(jnp.mean(jnp.square(xin @ q["Dense_0"]["kernel"] - xin @ w)))
    assert err(q_ada) < err(q_rtn)
    # same grid as RTN: every weight is floor or ceil of w/s, times the RTN scale
    s, _ = qparams(*minmax(w, axis=1), bits)
    k = q_ada["Dense_0"]["kernel"] / s
    np.testing.assert_allclose(k, jnp.round(k), atol=1e-4)
    assert float(jnp.max(jnp.abs(k - w / s))) < 1.0 + 1e-4
    acc_ada = _acc(model, q_ada, st.model_state, ds)
    acc_rtn = _acc(model, q_rtn, st.model_state, ds)
    assert acc_ada >= acc_rtn - 0.01


def test_rectified_sigmoid_and_errors():
    v = jnp.array([-100.0, 0.0, 100.0])
    np.testing.assert_allclose(rectified_sigmoid(v), [0.0, 0.5, 1.0], atol=1e-6)
    ds, model, st = trained()
    with pytest.raises(ConfigError, match="bits"):
        adaround(model, st.params, st.model_state, ds.x_train[:8], bits=1)
    with pytest.raises(ConfigError, match="calibration"):
        adaround(model, st.params, st.model_state, ds.x_train[:0], bits=4)
