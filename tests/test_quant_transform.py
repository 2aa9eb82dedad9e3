"""weight_quant through the conformance suite, numerics, rules, errors, pruned zeros."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcomp as jc
from jaxcomp.core.errors import ConfigError
from jaxcomp.quant import fake_quant
from jaxcomp.quant.transform import fake_quant_params, weight_quant
from tests.conformance import check_transform, linen_params


def test_conformance_per_channel_vmap_bits():
    check_transform(lambda: weight_quant(8), steps=(0, 3),
                    hparam_factory=lambda b: weight_quant(b), hparam_values=[2, 4, 8])


def test_conformance_variants():
    check_transform(lambda: weight_quant(4, per_channel=False, symmetric=False,
                                         group_size=None), param_sets=("linen",), steps=(0, 3))
    check_transform(lambda: weight_quant(4, group_size=8, rounding="stochastic",
                                         key=jax.random.key(3)),
                    param_sets=("nnx",), steps=(0, 3))


@pytest.mark.parametrize("use_jit", [True, False])
def test_mse_observer_clips_and_matches_jit(use_jit):
    params = linen_params()
    t = weight_quant(2, observer="mse")
    apply = jax.jit(t.apply) if use_jit else t.apply
    out = apply(params, t.init(params))["Dense_0"]["kernel"]
    ref = fake_quant(params["Dense_0"]["kernel"], 2, axis=-1)
    w = params["Dense_0"]["kernel"]
    mse = lambda y: float(jnp.mean(jnp.square(y - w)))
    assert mse(out) <= mse(ref) + 1e-9


@pytest.mark.parametrize("use_jit", [True, False])
def test_apply_equals_fake_quant_per_leaf(use_jit):
    params = linen_params()
    t = weight_quant(4, where=[("Dense_0/kernel", True), (".*/kernel", True)])
    apply = jax.jit(t.apply) if use_jit else t.apply
    out = apply(params, t.init(params))
    for name in ("Dense_0", "Dense_1", "Dense_2"):
        ref = fake_quant(params[name]["kernel"], 4, axis=-1)
        np.testing.assert_allclose(out[name]["kernel"], ref, atol=1e-7)
        np.testing.assert_array_equal(out[name]["bias"], params[name]["bias"])
    grads = jax.grad(lambda p: sum(jnp.sum(x) for x in jax.tree.leaves(t.apply(p, t.init(p)))))(
        params)
    assert float(jnp.min(grads["Dense_0"]["kernel"])) == 1.0  # STE: in range everywhere


def test_bit_rules_keep_first_and_last_at_8():
    params = linen_params()
    t = weight_quant([("Dense_0/kernel", 8), ("Dense_2/kernel", 8), (".*/kernel", 2)])
    st = t.init(params)
    assert {k: float(v) for k, v in st["bits"].items()} == {
        "Dense_0/kernel": 8.0, "Dense_1/kernel": 2.0, "Dense_2/kernel": 8.0}
    out = t.apply(params, st)
    assert len(np.unique(np.asarray(out["Dense_1"]["kernel"][:, 0]))) <= 3
    with pytest.raises(ConfigError, match="Nope"):
        weight_quant([("Nope/kernel", 8)]).init(params)


def test_pruned_zeros_stay_zero_after_chain():
    params = linen_params()
    k = params["Dense_0"]["kernel"]
    mask = jnp.abs(k) > jnp.quantile(jnp.abs(k), 0.7)
    pruned = {**params, "Dense_0": {**params["Dense_0"], "kernel": k * mask}}
    for sym in (True, False):
        for pc in (True, False):
            out = fake_quant_params(pruned, 4, symmetric=sym, per_channel=pc)
            assert bool(jnp.all(out["Dense_0"]["kernel"][~mask] == 0))
    prune = jc.stateless(lambda p: {**p, "Dense_0": {**p["Dense_0"],
                                                     "kernel": p["Dense_0"]["kernel"] * mask}})
    t = jc.chain(prune, weight_quant(3, symmetric=False))
    out = t.apply(params, t.init(params))
    assert bool(jnp.all(out["Dense_0"]["kernel"][~mask] == 0))


def test_errors():
    params = linen_params()
    with pytest.raises(ConfigError, match="bits"):
        weight_quant(12).init(params)
    with pytest.raises(ConfigError, match="axis"):
        weight_quant(8, axis=3).init(params)
    with pytest.raises(ConfigError, match="group_size.*divide"):
        weight_quant(8, group_size=5).init(params)
    with pytest.raises(ConfigError, match="key"):
        weight_quant(8, rounding="stochastic")
    with pytest.raises(ConfigError, match="observer"):
        weight_quant(8, observer="kl")
    bad = {**params, "Dense_1": {**params["Dense_1"],
                                 "kernel": params["Dense_1"]["kernel"].at[0, 0].set(jnp.nan)}}
    with pytest.raises(ConfigError, match="Dense_1/kernel.*NaN"):
        weight_quant(8).init(bad)
    zero = {**params, "Dense_1": {**params["Dense_1"],
                                  "kernel": jnp.zeros_like(params["Dense_1"]["kernel"])}}
    out = fake_quant_params(zero, 8, symmetric=False)
    assert bool(jnp.all(out["Dense_1"]["kernel"] == 0))


@pytest.mark.parametrize("params, needle", [
    ({"Dense_0": {"kernel": jnp.arange(6).reshape(2, 3)}}, r"Dense_0/kernel has dtype int32"),
    ({}, r"no leaf selected"),
])
def test_weight_quant_refuses_integer_leaves_and_empty_selections(params, needle):
    from jaxcomp.core.errors import ConfigError
    from jaxcomp.quant import weight_quant

    with pytest.raises(ConfigError, match=needle):
        weight_quant(bits=4, where=lambda path, leaf: True).init(params)
