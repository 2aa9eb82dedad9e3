"""LSQ: the step-size gradient against the paper's formula, conformance, training."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcomp.data import synthetic
from jaxcomp.models import get_model
from jaxcomp.quant.lsq import add_lsq_scales, lsq, lsq_fake_quant
from jaxcomp.train import fit
from tests.conformance import check_transform


def test_lsq_gradients_match_paper():
    x = jnp.array([0.3, -0.61, 2.0, -2.0, 0.05])
    s, bits = jnp.array(0.2), 3  # qmin, qmax = -3, 3
    for use_jit in (False, True):
        f = lambda s, x: lsq_fake_quant(x, s, bits).sum()
        f = jax.jit(f) if use_jit else f
        gs, gx = jax.grad(f, argnums=(0, 1))(s, x)
        v = np.asarray(x) / 0.2
        inside = (v > -3) & (v < 3)
        ref = np.where(inside, -v + np.round(v), np.clip(v, -3, 3))
        g = 1 / np.sqrt(x.size * 3)
        np.testing.assert_allclose(gs, ref.sum() * g, rtol=1e-5)
        np.testing.assert_array_equal(gx, inside.astype(np.float32))


def test_lsq_conformance():
    check_transform(lambda: lsq(4), hparam_factory=lambda b: lsq(b), hparam_values=[4, 8],
                    param_sets=("linen",))


def test_lsq_scales_train():
    ds = synthetic(num_train=256, num_test=128, shape=(6,), num_classes=3)
    model = get_model("mlp", input_shape=(6,), num_classes=3, features=(16,))
    params, _ = model.init(jax.random.key(0), ds.x_train[:1])
    p = add_lsq_scales(params, bits=4)
    s0 = np.asarray(p["Dense_0"]["kernel_lsq_scale"])
    from jaxcomp.train.loop import init_state
    tx = optax.adam(1e-2)
    t = lsq(4)
    st = init_state(model, ds, tx, seed=0, transform=t, params=p, model_state={})
    res = fit(model, ds, tx, epochs=4, batch_size=32, state=st, transform=t, progress=False)
    ref = fit(model, ds, optax.adam(1e-2), epochs=4, batch_size=32, seed=0, progress=False)
    s1 = np.asarray(res.state.params["Dense_0"]["kernel_lsq_scale"])
    assert not np.allclose(s0, s1)
    assert res.history[-1]["test_accuracy"] >= ref.history[-1]["test_accuracy"] - 0.1
    eff = t.apply(res.state.params, res.state.comp_state)["Dense_0"]["kernel"]
    steps = np.asarray(eff) / s1
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-4)
