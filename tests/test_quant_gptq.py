"""GPTQ against a plain numpy row-by-row reference, Hessian accumulation,
reconstruction error versus round-to-nearest, act-order, clear errors, and the
block-by-block driver on a tiny 2-block transformer."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcomp.core.errors import ConfigError
from jaxcomp.quant import calib as G
from jaxcomp.quant.calib import stats as S


# ----------------------------------------------------------------- numpy reference
def np_qrange(bits, sym):
    half = 2 ** (bits - 1)
    return (-(half - 1), half - 1) if sym else (-half, half - 1)


def np_params(cols, bits, sym):
    qmin, qmax = np_qrange(bits, sym)
    lo = np.minimum(cols.min(1), 0.0)
    hi = np.maximum(cols.max(1), 0.0)
    if sym:
        s = np.maximum(-lo, hi) / qmax
        z = np.zeros_like(s)
    else:
        s = (hi - lo) / (qmax - qmin)
        safe = np.where(s > 0, s, 1.0)
        z = np.clip(np.round(qmin - lo / safe), qmin, qmax)
    bad = ~(s > 0)
    return np.where(bad, 1.0, s), np.where(bad, 0.0, z)


def np_gptq(w, h, bits, gs, sym, damp=0.01, act_order=False):
    """Algorithm 1 of the GPTQ paper, one input row at a time (no lazy batches)."""
    W = np.array(w, np.float64).T.copy()
    H = np.array(h, np.float64).copy()
    n_out, n_in = W.shape
    dead = np.diag(H) == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    qmin, qmax = np_qrange(bits, sym)
    static = None
    if act_order and gs:
        static = [np_params(W[:, g * gs:(g + 1) * gs], bits, sym) for g in range(n_in // gs)]
    perm = np.argsort(-np.diag(H), kind="stable") if act_order else np.arange(n_in)
    W, H = W[:, perm], H[perm][:, perm]
    H += damp * np.mean(np.diag(H)) * np.eye(n_in)
    U = np.linalg.cholesky(np.linalg.inv(H)).T
    Q = np.zeros_like(W)
    C = np.zeros_like(W)
    s, z = np_params(W, bits, sym)
    for j in range(n_in):
        if gs and static is not None:
            s, z = static[perm[j] // gs]
        elif gs and j % gs == 0:
            s, z = np_params(W[:, j:j + gs], bits, sym)
        q = np.clip(np.round(W[:, j] / s + z), qmin, qmax)
        dq = (q - z) * s
        Q[:, j], C[:, j] = dq, q
        err = (W[:, j] - dq) / U[j, j]
        W[:, j:] -= np.outer(err, U[j, j:])
    inv = np.argsort(perm)
    return Q[:, inv].T, C[:, inv].T


def correlated(key, n, d, rank=8):
    """Inputs with strongly correlated channels (low-rank plus noise)."""
    k1, k2, k3 = jax.random.split(key, 3)
    base = jax.random.normal(k1, (n, rank)) @ jax.random.normal(k2, (rank, d))
    return base + 0.3 * jax.random.normal(k3, (n, d))


def out_err(x, w, wq):
    return float(jnp.linalg.norm(x @ w - x @ wq))


CASES = [  # (d_in, d_out, bits, group, sym, act_order, block)
    (64, 24, 4, 16, True, False, 32),
    (64, 24, 3, 32, False, False, 16),     # groups larger than blocks
    (96, 20, 4, 32, False, True, 64),      # act-order, static groups
    (40, 12, 8, None, False, True, 16),    # not a multiple of the block (padding)
]


@pytest.mark.parametrize("case", CASES)
def test_gptq_matches_numpy_reference(case):
    d_in, d_out, bits, gs, sym, ao, bs = case
    x = correlated(jax.random.key(d_in + bits), 512, d_in)
    w = jax.random.normal(jax.random.key(7), (d_in, d_out))
    h = S.hessian_of(x)
    wq, q, s, z = G.gptq(w, h, bits=bits, group_size=gs, sym=sym, act_order=ao, block_size=bs)
    ref_w, ref_q = np_gptq(np.asarray(w), np.asarray(h), bits, gs, sym, act_order=ao)
    codes_equal = np.mean(np.asarray(q) == ref_q)
    assert codes_equal > 0.99, codes_equal
    close = np.isclose(np.asarray(wq), ref_w, rtol=1e-4, atol=1e-4)
    assert close.mean() > 0.99
    # the returned codes / scales / zeros reproduce the dequantized kernel
    from jaxcomp.quant.calib._common import dequant
    np.testing.assert_allclose(dequant(q, s, z), wq, rtol=1e-5, atol=1e-6)
    ng = d_in // gs if gs else 1
    assert s.shape == z.shape == (ng, d_out) and q.dtype == jnp.int8


@pytest.mark.parametrize("use_jit", [True, False])
def test_gptq_jit_and_eager_agree(use_jit):
    x = correlated(jax.random.key(1), 128, 16)
    w = jax.random.normal(jax.random.key(2), (16, 4))
    h = S.hessian_of(x)
    f = lambda w, h: G.gptq(w, h, bits=4, group_size=8, sym=True, block_size=8)[0]  # noqa
    if use_jit:
        got = jax.jit(f)(w, h)
    else:
        with jax.disable_jit():
            got = f(w, h)
    ref_w, _ = np_gptq(np.asarray(w), np.asarray(h), 4, 8, True)
    assert np.isclose(np.asarray(got), ref_w, rtol=1e-4, atol=1e-4).mean() > 0.99


def test_dead_inputs_are_zeroed():
    x = correlated(jax.random.key(3), 256, 16)
    x = x.at[:, 5].set(0.0)
    w = jax.random.normal(jax.random.key(4), (16, 4))
    wq, q, _, _ = G.gptq(w, S.hessian_of(x), bits=4, group_size=None, sym=True)
    assert np.all(np.asarray(wq)[5] == 0) and np.all(np.asarray(q)[5] == 0)


@pytest.mark.parametrize("bits", [3, 4])
def test_gptq_beats_rtn_and_act_order_helps(bits):
    x = correlated(jax.random.key(5), 1024, 128)
    x = x * jnp.linspace(0.2, 3.0, 128)       # uneven channel scales: act-order matters
    w = jax.random.normal(jax.random.key(6), (128, 64))
    h = S.hessian_of(x)
    e_rtn = out_err(x, w, G.rtn(w, bits=bits, group_size=32, sym=False)[0])
    e_g = out_err(x, w, G.gptq(w, h, bits=bits, group_size=32, sym=False)[0])
    e_ao = out_err(x, w, G.gptq(w, h, bits=bits, group_size=32, sym=False, act_order=True)[0])
    assert e_g < 0.8 * e_rtn
    assert e_ao <= e_g * 1.02


def test_hessian_accumulator_matches_one_shot():
    x = jax.random.normal(jax.random.key(8), (3, 50, 12))
    st = S.hessian_init(12)
    for b in x:
        st = jax.jit(S.hessian_update)(st, b)
    want = 2 * np.einsum("ni,nj->ij", np.asarray(x).reshape(-1, 12),
                         np.asarray(x).reshape(-1, 12)) / 150
    np.testing.assert_allclose(S.hessian_finalize(st), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(S.collect(list(x)).xtx, st.xtx, rtol=1e-6)
    acc = S.hessian_accumulator()
    st2 = acc.init(12)
    for b in x:
        st2 = acc.update(st2, b)
    np.testing.assert_allclose(acc.finalize(st2), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(S.absmean(st), np.abs(np.asarray(x)).reshape(-1, 12).mean(0),
                               rtol=1e-5)


def test_clear_errors():
    w = jnp.ones((12, 4))
    with pytest.raises(ConfigError, match=r"blocks\.0\.mlp.*group_size.*10.*\[1, 2, 3, 4, 6, 12\]"):
        G.gptq(w, jnp.eye(12), bits=4, group_size=10, sym=True, path="blocks.0.mlp")
    with pytest.raises(ConfigError, match=r"attn/q.*singular.*calibration samples.*damp"):
        G.gptq(w, -jnp.eye(12), bits=4, group_size=None, sym=True, damp=0.0, path="attn/q")
    with pytest.raises(ConfigError, match=r"h: expected the \(12, 12\)"):
        G.gptq(w, jnp.eye(3), bits=4, group_size=None, sym=True)
    with pytest.raises(ConfigError, match="bits"):
        G.gptq(w, jnp.eye(12), bits=16, group_size=None, sym=True)
