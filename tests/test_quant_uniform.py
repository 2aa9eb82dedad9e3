"""Uniform and fp8 quantizers against numpy references, in jit and eager."""

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from jaxcomp.core.errors import ConfigError
from jaxcomp.quant import dequantize, fake_quant, fake_quant_fp8, quantize
from jaxcomp.quant.uniform import SUPPORTED_BITS, qrange


def np_quant(x, bits, axis, symmetric, signed=True):
    """Reference: numpy min/max uniform quantization."""
    red = tuple(a for a in range(x.ndim) if a not in ((axis,) if axis is not None else ()))
    lo = np.minimum(x.min(axis=red, keepdims=True), 0)
    hi = np.maximum(x.max(axis=red, keepdims=True), 0)
    if symmetric:
        qmax = 2 ** (bits - 1) - 1 if signed else 2 ** bits - 1
        qmin = -qmax if signed else 0
        amax = np.maximum(-lo, hi) if signed else hi
        scale = np.where(amax > 0, amax / np.float32(qmax), 1.0).astype(x.dtype)
        zp = np.zeros_like(scale)
    else:
        qmin, qmax = (-2 ** (bits - 1), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)
        scale = (hi - lo) / np.float32(qmax - qmin)
        scale = np.where(scale > 0, scale, 1.0).astype(x.dtype)
        zp = np.clip(np.round(qmin - lo / scale), qmin, qmax)
    q = np.clip(np.round(x / scale + zp), qmin, qmax)
    return q, scale, zp


@pytest.mark.parametrize("use_jit", [True, False])
@pytest.mark.parametrize("bits", [2, 4, 8, 16])
@pytest.mark.parametrize("axis", [None, 0, 1])
@pytest.mark.parametrize("symmetric", [True, False])
def test_matches_numpy(use_jit, bits, axis, symmetric):
    x = np.asarray(jax.random.normal(jax.random.key(bits), (6, 5)), np.float32)
    f = lambda x: quantize(x, bits, axis=axis, symmetric=symmetric)
    f = jax.jit(f) if use_jit else f
    q, s, z = f(x)
    rq, rs, rz = np_quant(x, bits, axis, symmetric)
    np.testing.assert_allclose(s, rs, rtol=1e-6)
    np.testing.assert_array_equal(z, rz)
    np.testing.assert_array_equal(np.asarray(q, np.float64), rq)
    assert q.dtype == (jnp.int8 if bits <= 8 else jnp.int16)


_roundtrip = jax.jit(lambda x, b, axis, sym: dequantize(*quantize(x, b, axis=axis, symmetric=sym))
                     - x, static_argnums=(2, 3))
_scale = jax.jit(lambda x, b, axis, sym: quantize(x, b, axis=axis, symmetric=sym)[1],
                 static_argnums=(2, 3))


@settings(max_examples=40, deadline=None)
@given(arrays(np.float32, (5, 6), elements=st.floats(-1e3, 1e3, width=32)),
       st.sampled_from(SUPPORTED_BITS), st.sampled_from([None, 0, 1]), st.booleans())
def test_roundtrip_error_at_most_half_step(x, bits, axis, symmetric):
    b = jnp.asarray(bits)  # traced bits: one compile per (axis, symmetric)
    err = np.abs(np.asarray(_roundtrip(x, b, axis, symmetric)))
    s = np.asarray(_scale(x, b, axis, symmetric))
    assert np.all(err <= s / 2 * (1 + 1e-5) + 1e-30)


def test_per_group_matches_blockwise_reference():
    x = np.asarray(jax.random.normal(jax.random.key(1), (8, 3)), np.float32)
    q, s, z = quantize(x, 4, axis=1, group_size=4, group_axis=0)
    assert s.shape == (2, 3)
    for g in range(2):
        rq, rs, _ = np_quant(x[4 * g:4 * g + 4], 4, 1, True)
        np.testing.assert_allclose(s[g], rs[0], rtol=1e-6)
        np.testing.assert_array_equal(q[4 * g:4 * g + 4], rq)
    err = np.abs(np.asarray(dequantize(q, s, z)) - x)
    assert np.all(err <= np.repeat(np.asarray(s), 4, axis=0) / 2 + 1e-7)


def test_zero_exact_and_all_zero_tensor():
    x = jnp.array([[0.0, 0.3, 0.9], [0.0, 0.1, 0.5]])  # pruned zeros, all positive
    for sym in (True, False):
        y = fake_quant(x, 4, symmetric=sym)
        assert bool((y[:, 0] == 0).all())
    q, s, z = quantize(jnp.zeros((3, 4)), 8, axis=1, symmetric=False)
    assert np.all(np.isfinite(s)) and np.all(np.asarray(q) == 0)
    assert np.all(np.asarray(dequantize(q, s, z)) == 0)


def test_unsigned_range_for_relu_outputs():
    x = jnp.linspace(0, 1, 11)
    q, s, z = quantize(x, 8, signed=False)
    assert q.dtype == jnp.uint8 and int(q.max()) == 255
    np.testing.assert_allclose(s, 1 / 255, rtol=1e-6)


def test_ste_gradient_clipped_to_range():
    s = jnp.array(0.1)
    from jaxcomp.quant.uniform import ste_fake_quant
    x = jnp.array([-2.0, -0.7, 0.05, 0.7, 2.0])
    g = jax.grad(lambda x: ste_fake_quant(x, s, jnp.zeros(()), 4).sum())(x)
    np.testing.assert_array_equal(g, [0, 1, 1, 1, 0])  # range is [-0.7, 0.7]


@pytest.mark.parametrize("use_jit", [False, True])
def test_absmax_ste_passes_the_range_setting_element(use_jit):
    """With a symmetric range taken from x itself nothing is clipped, so every element's
    gradient is 1 — also the one that sets the range when 127 * (amax / 127) rounds below
    amax in float32 (7.9867277 does), which a range-mask STE would zero."""
    amax = np.float32(7.9867277)
    assert np.float32(127) * np.float32(amax / np.float32(127)) < amax  # the float artifact
    x = jnp.array([[amax, 0.5], [-1.0, -2.25]], jnp.float32)
    f = lambda v: fake_quant(v, 8, axis=1).sum()  # noqa: E731
    g = (jax.jit(jax.grad(f)) if use_jit else jax.grad(f))(x)
    np.testing.assert_array_equal(g, np.ones((2, 2)))
    from jaxcomp.quant.uniform import ste_fake_quant  # same codes as the masked STE
    scale = jnp.max(jnp.abs(x), axis=0, keepdims=True) / 127
    np.testing.assert_array_equal(fake_quant(x, 8, axis=1),
                                  ste_fake_quant(x, scale, jnp.zeros_like(scale), 8))
    g_masked = jax.grad(lambda v: ste_fake_quant(v, scale, jnp.zeros_like(scale), 8).sum())(x)
    assert float(g_masked[0, 0]) == 0.0  # what the range mask did to it


def test_traced_bits_vmap_equals_loop():
    x = jax.random.normal(jax.random.key(0), (16, 4))
    bits = jnp.array([2, 4, 8])
    batched = jax.jit(jax.vmap(lambda b: fake_quant(x, b, axis=1)))(bits)
    for i, b in enumerate([2, 4, 8]):
        np.testing.assert_allclose(batched[i], fake_quant(x, b, axis=1), atol=1e-7)
    lo, hi = qrange(jnp.array(3))
    assert (float(lo), float(hi)) == (-3.0, 3.0)


def test_stochastic_rounding_needs_key_and_is_unbiased():
    x = jnp.full((20000,), 0.3) * (1 / 127)  # 0.3 of a step when amax gives scale 1/127
    x = x.at[0].set(1.0)
    with pytest.raises(ConfigError, match="key"):
        quantize(x, 8, rounding="stochastic")
    q, s, _ = quantize(x, 8, rounding="stochastic", key=jax.random.key(0))
    assert abs(float(jnp.mean(q[1:])) - 0.3) < 0.02
    q2, _, _ = quantize(x, 8, rounding="stochastic", key=jax.random.key(0))
    np.testing.assert_array_equal(q, q2)


@pytest.mark.parametrize("fmt,dt", [("e4m3", ml_dtypes.float8_e4m3fn),
                                    ("e5m2", ml_dtypes.float8_e5m2)])
def test_fp8_matches_ml_dtypes(fmt, dt):
    x = np.asarray(jax.random.normal(jax.random.key(2), (32,)), np.float32)
    scale = np.abs(x).max() / float(ml_dtypes.finfo(dt).max)
    ref = (x / scale).astype(dt).astype(np.float32) * scale
    for f in (fake_quant_fp8, jax.jit(fake_quant_fp8, static_argnums=1)):
        np.testing.assert_allclose(f(x, fmt), ref, rtol=1e-6)
    g = jax.grad(lambda x: fake_quant_fp8(x, fmt).sum())(x)
    np.testing.assert_array_equal(g, np.ones_like(x))


def test_bad_inputs():
    x = jnp.ones((4, 6))
    with pytest.raises(ConfigError, match="bits.*9"):
        quantize(x, 9)
    with pytest.raises(ConfigError, match="bits"):
        quantize(x, 1)
    with pytest.raises(ConfigError, match="axis.*range"):
        quantize(x, 8, axis=2)
    with pytest.raises(ConfigError, match="group_size.*divisor"):
        quantize(x, 8, group_size=4, group_axis=1)
    with pytest.raises(ConfigError, match="NaN or infinite"):
        quantize(x.at[0, 0].set(jnp.nan), 8)
    with pytest.raises(ConfigError, match="NaN or infinite"):
        fake_quant(x.at[0, 0].set(jnp.inf), 8)
    with pytest.raises(ConfigError, match="rounding"):
        quantize(x, 8, rounding="up")
    with pytest.raises(ConfigError, match="fp8 format"):
        fake_quant_fp8(x, "e3m4")
