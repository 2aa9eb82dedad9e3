"""AWQ, SmoothQuant and activation fake-quant against numpy references; folding
keeps the float function; both beat their naive baselines on outlier inputs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcomp.core.errors import ConfigError
from jaxcomp.quant import calib
from jaxcomp.quant.calib import fold


def np_rtn(w, bits, gs, sym):
    """Group-wise round-to-nearest of an (in, out) kernel, groups along `in`."""
    n_in, n_out = w.shape
    half = 2 ** (bits - 1)
    qmin, qmax = (-(half - 1), half - 1) if sym else (-half, half - 1)
    wg = w.T.reshape(n_out, n_in // gs, gs)
    lo = np.minimum(wg.min(-1, keepdims=True), 0)
    hi = np.maximum(wg.max(-1, keepdims=True), 0)
    if sym:
        s, z = np.maximum(-lo, hi) / qmax, np.zeros_like(lo)
    else:
        s = (hi - lo) / (qmax - qmin)
        z = np.clip(np.round(qmin - lo / np.where(s > 0, s, 1)), qmin, qmax)
    s = np.where(s > 0, s, 1.0)
    q = np.clip(np.round(wg / s + z), qmin, qmax)
    return ((q - z) * s).reshape(n_out, n_in).T


def np_awq(x, w, bits, gs, sym, n_grid=20):
    """AWQ's grid search, the output error measured on the activations directly."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    xm = np.maximum(np.abs(x).mean(0), 1e-4)
    y = x @ w
    losses = []
    for a in np.linspace(0, 1, n_grid):
        s = xm ** a
        s = s / np.sqrt(s.max() * s.min())
        wq = np_rtn(w * s[:, None], bits, gs, sym)
        losses.append(np.sum((y - (x / s) @ wq) ** 2))
    a = np.linspace(0, 1, n_grid)[int(np.argmin(losses))]
    s = xm ** a
    return s / np.sqrt(s.max() * s.min()), np.array(losses)


def outlier_x(key, n, d, n_big=3, big=25.0):
    k1, k2 = jax.random.split(key)
    scale = jnp.ones(d).at[jax.random.choice(k2, d, (n_big,), replace=False)].set(big)
    return jax.random.normal(k1, (n, d)) * scale


def layernorm(x, g, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    v = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / jnp.sqrt(v + eps) * g + b


@pytest.mark.parametrize("use_jit", [True, False])
def test_awq_matches_numpy_search(use_jit):
    x = outlier_x(jax.random.key(0), 256, 32)
    w = jax.random.normal(jax.random.key(1), (32, 24))
    f = lambda w, x: calib.awq(w, x, bits=3, group_size=16, sym=False)  # noqa: E731
    if use_jit:
        r = f(w, x)
    else:
        with jax.disable_jit():
            r = f(w, x)
    s_ref, loss_ref = np_awq(x, w, 3, 16, False)
    np.testing.assert_allclose(r.loss, loss_ref, rtol=2e-3)
    np.testing.assert_allclose(r.scales, s_ref, rtol=1e-4)
    np.testing.assert_allclose(r.w_q, np_rtn(np.asarray(w) * s_ref[:, None], 3, 16, False),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(calib.dequant(r.codes, r.qscales, r.zeros), r.w_q, atol=1e-6)


@pytest.mark.parametrize("bits", [3, 4])
def test_awq_beats_rtn_on_outlier_channels_held_out(bits):
    key = jax.random.key(2)
    x = outlier_x(key, 2048, 64)
    w = jax.random.normal(jax.random.key(3), (64, 48))
    r = calib.awq(w, x[:1024], bits=bits, group_size=32, sym=False)
    xt = x[1024:]
    e_awq = jnp.linalg.norm(xt @ w - xt @ calib.effective_kernel(r))
    e_rtn = jnp.linalg.norm(xt @ w - xt @ calib.rtn(w, bits=bits, group_size=32, sym=False)[0])
    assert float(r.alpha) > 0 and e_awq < 0.9 * e_rtn


def test_awq_scales_fold_into_layernorm_and_previous_linear():
    x = outlier_x(jax.random.key(4), 128, 16)
    g, b = 1 + 0.1 * jnp.arange(16.0), 0.05 * jnp.arange(16.0)
    w = jax.random.normal(jax.random.key(5), (16, 8))
    h = layernorm(x, g, b)
    s = calib.awq(w, h, bits=4, group_size=8, sym=True).scales
    g2, b2 = fold.fold_into_norm(g, b, s)
    np.testing.assert_allclose(layernorm(x, g2, b2) @ fold.scale_inputs(w, s), h @ w,
                               rtol=1e-4, atol=1e-4)
    # a previous linear's output columns
    w0, b0 = jax.random.normal(jax.random.key(6), (16, 16)), jnp.arange(16.0) / 10
    z = jax.nn.relu(x)
    w0f, b0f = fold.fold_into_linear(w0, b0, s)
    np.testing.assert_allclose((z @ w0f + b0f) @ fold.scale_inputs(w, s), (z @ w0 + b0) @ w,
                               rtol=1e-4, atol=1e-3)


def test_smooth_scales_formula_and_fold_keeps_function():
    x = outlier_x(jax.random.key(7), 256, 32)
    g, b = jnp.ones(32), jnp.zeros(32)
    w = jax.random.normal(jax.random.key(8), (32, 16))
    h = layernorm(x, g, b) * (1 + 30 * (jnp.arange(32) % 11 == 0))  # outliers after the norm
    amax = np.abs(np.asarray(h)).max(0)
    for alpha in (0.5, 0.8):
        s = calib.smooth_scales(amax, w, alpha=alpha)
        want = amax ** alpha / np.abs(np.asarray(w)).max(1) ** (1 - alpha)
        np.testing.assert_allclose(s, want, rtol=1e-5)
    np.testing.assert_allclose((h / s) @ calib.fold_smoothing(w, s), h @ w, rtol=1e-4, atol=1e-3)
    with pytest.raises(ConfigError, match="alpha"):
        calib.smooth_scales(amax, w, alpha=1.5)


def np_w8a8(x, w, amax_x):
    sa = amax_x.max() / 127
    xq = np.clip(np.round(x / sa), -127, 127) * sa
    sw = np.abs(w).max(0, keepdims=True) / 127
    return xq @ (np.clip(np.round(w / sw), -127, 127) * sw)


@pytest.mark.parametrize("use_jit", [True, False])
def test_w8a8_smoothing_beats_naive_on_outliers(use_jit):
    x = outlier_x(jax.random.key(9), 512, 64, n_big=4, big=80.0)
    w = jax.random.normal(jax.random.key(10), (64, 32)) * 0.1
    calib_x, test_x = x[:256], x[256:]
    amax = jnp.abs(calib_x).max(0)
    s = calib.smooth_scales(amax, w, alpha=0.5)
    ws = calib.fold_smoothing(w, s)
    f = jax.jit(calib.w8a8) if use_jit else calib.w8a8
    naive = f(test_x, w, amax)
    smooth = f(test_x / s, ws, amax / s)
    np.testing.assert_allclose(naive, np_w8a8(np.asarray(test_x), np.asarray(w),
                                              np.asarray(amax)), rtol=1e-3, atol=1e-3)
    y = test_x @ w
    assert float(jnp.linalg.norm(smooth - y)) < 0.5 * float(jnp.linalg.norm(naive - y))


def test_activation_fake_quant_matches_numpy():
    x = np.asarray(outlier_x(jax.random.key(11), 6, 10))
    for bits in (4, 8):
        qmax = 2 ** (bits - 1) - 1
        s = np.abs(x).max(1, keepdims=True) / qmax
        want = np.clip(np.round(x / s), -qmax, qmax) * s
        np.testing.assert_allclose(calib.per_token(jnp.asarray(x), bits), want, rtol=1e-5,
                                   atol=1e-6)
        np.testing.assert_allclose(jax.jit(calib.per_token, static_argnums=1)(x, bits), want,
                                   rtol=1e-5, atol=1e-6)
        st = calib.per_tensor_scale(jnp.abs(jnp.asarray(x)).max(0), bits)
        np.testing.assert_allclose(st, np.abs(x).max() / qmax, rtol=1e-6)
        want_t = np.clip(np.round(x / float(st)), -qmax, qmax) * float(st)
        np.testing.assert_allclose(calib.per_tensor(jnp.asarray(x), st, bits), want_t,
                                   rtol=1e-5, atol=1e-6)
