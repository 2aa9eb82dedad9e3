"""Activation fake-quant through the interception adapter (linen and NNX)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcomp.core.errors import ConfigError
from jaxcomp.data import synthetic
from jaxcomp.models import NNXMLP, get_model
from jaxcomp.quant.act import act_quant, act_quant_nnx
from jaxcomp.quant.uniform import fake_quant
from jaxcomp.train import fit


def _mlp():
    return get_model("mlp", input_shape=(6,), num_classes=3, features=(8,))


def _manual(params, x, bits0, bits1, ranges=None):
    """Reference forward: fake-quant (asymmetric, per-tensor) each Dense input."""
    def fq(h, b, r):
        if r is None:
            return fake_quant(h, b, symmetric=False)
        from jaxcomp.quant.uniform import qparams, ste_fake_quant
        s, z = qparams(*r, b, symmetric=False)
        return ste_fake_quant(h, s, z, b, symmetric=False)
    r0, r1 = ranges or (None, None)
    h = fq(x, bits0, r0) @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"]
    h = jax.nn.relu(h)
    return fq(h, bits1, r1) @ params["Dense_1"]["kernel"] + params["Dense_1"]["bias"]


@pytest.mark.parametrize("use_jit", [True, False])
def test_linen_matches_manual_and_rules(use_jit):
    aq = act_quant(_mlp(), [("Dense_0", 8), ("Dense_.*", 4)])
    x = jax.random.normal(jax.random.key(1), (16, 6))
    params, ms = aq.model.init(jax.random.key(0), x[:1])
    assert {p: float(s["bits"]) for p, s in ms["act_quant"].items()} == {"Dense_0": 8.0,
                                                                        "Dense_1": 4.0}
    apply = jax.jit(aq.model.apply, static_argnames="train") if use_jit else aq.model.apply
    out, _ = apply(params, ms, x, train=False)  # nothing observed yet: batch ranges
    np.testing.assert_allclose(out, _manual(params, x, 8, 4), atol=1e-5)
    out_t, ms2 = apply(params, ms, x, train=True)  # first train batch sets the range
    np.testing.assert_allclose(out_t, out, atol=1e-5)
    st = ms2["act_quant"]["Dense_0"]
    assert int(st["count"]) == 1
    np.testing.assert_allclose([st["lo"], st["hi"]], [x.min(), x.max()], rtol=1e-6)
    # second batch: exponential moving average with momentum 0.9
    x2 = 3 * x
    _, ms3 = apply(params, ms2, x2, train=True)
    np.testing.assert_allclose(ms3["act_quant"]["Dense_0"]["hi"],
                               0.9 * x.max() + 0.1 * x2.max(), rtol=1e-5)
    # eval on new data uses the stored ranges (x2 values beyond them are clipped)
    out_e, ms_e = apply(params, ms3, x2, train=False)
    r0 = (ms3["act_quant"]["Dense_0"]["lo"], ms3["act_quant"]["Dense_0"]["hi"])
    r1 = (ms3["act_quant"]["Dense_1"]["lo"], ms3["act_quant"]["Dense_1"]["hi"])
    np.testing.assert_allclose(out_e, _manual(params, x2, 8, 4, (r0, r1)), atol=1e-5)


def test_rule_matching_nothing_is_an_error():
    aq = act_quant(_mlp(), [("Conv_0", 8)])
    with pytest.raises(ConfigError, match="Conv_0.*matches no module"):
        aq.model.init(jax.random.key(0), jnp.ones((1, 6)))
    with pytest.raises(ConfigError, match="bits"):
        act_quant(_mlp(), [("Dense_0", 11)])


def test_calibrate_observers_and_no_batches():
    aq = act_quant(_mlp(), ["Dense_.*"])
    params, ms = aq.model.init(jax.random.key(0), jnp.ones((1, 6)))
    xs = [jax.random.normal(jax.random.key(i), (64, 6)) for i in range(3)]
    mm = aq.calibrate(params, ms, xs, observer="minmax")["act_quant"]["Dense_0"]
    allx = jnp.concatenate(xs)
    np.testing.assert_allclose([mm["lo"], mm["hi"]], [allx.min(), allx.max()], rtol=1e-6)
    assert int(mm["count"]) == 3
    for obs in ("percentile", "mse"):
        r = aq.calibrate(params, ms, xs, observer=obs)["act_quant"]["Dense_0"]
        assert float(mm["lo"]) <= float(r["lo"]) and float(r["hi"]) <= float(mm["hi"])
    with pytest.raises(ConfigError, match="at least 1"):
        aq.calibrate(params, ms, [])
    with pytest.raises(ConfigError, match="observer"):
        aq.calibrate(params, ms, xs, observer="kl")


def test_nnx_matches_linen_reference_and_trains():
    aq = act_quant_nnx(lambda rngs: NNXMLP(6, (8,), 3, rngs=rngs), [("layers/0", 8),
                                                                    ("layers/1", 4)])
    x = jax.random.normal(jax.random.key(1), (16, 6))
    params, ms = aq.model.init(jax.random.key(0), x[:1])
    out, _ = aq.model.apply(params, ms, x, train=False)
    lin = {"Dense_0": {k: params["layers"][0][k][...] for k in ("kernel", "bias")},
           "Dense_1": {k: params["layers"][1][k][...] for k in ("kernel", "bias")}}
    np.testing.assert_allclose(out, _manual(lin, x, 8, 4), atol=1e-5)
    with pytest.raises(ConfigError, match="matches no module"):
        act_quant_nnx(lambda rngs: NNXMLP(6, (8,), 3, rngs=rngs), ["Dense_0"]).model.init(
            jax.random.key(0), x[:1])


def test_fit_with_activation_quant():
    ds = synthetic(num_train=256, num_test=128, shape=(6,), num_classes=3)
    aq = act_quant(_mlp(), ["Dense_.*"], bits=8)
    res = fit(aq.model, ds, optax.adam(1e-2), epochs=4, batch_size=32, seed=0, progress=False)
    ref = fit(_mlp(), ds, optax.adam(1e-2), epochs=4, batch_size=32, seed=0, progress=False)
    assert res.history[-1]["test_accuracy"] >= ref.history[-1]["test_accuracy"] - 0.05
    assert res.history[-1]["test_accuracy"] > 1 / 3 + 0.1  # learned something
    assert int(res.state.model_state["act_quant"]["Dense_0"]["count"]) > 0
