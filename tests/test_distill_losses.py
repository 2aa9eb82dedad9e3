"""Distillation losses against float64 numpy references (values and gradients),
in jit and non-jit variants, plus the T² gradient scaling and bad-input errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcomp.distill as kd
from jaxcomp.core.errors import ConfigError

RNG = np.random.default_rng(0)
B, C = 6, 5
S_LOGITS = RNG.normal(size=(B, C)) * 2
T_LOGITS = RNG.normal(size=(B, C)) * 3
LABELS = RNG.integers(0, C, size=B)


# ---------------------------------------------------------------- numpy references
def np_softmax(z, axis=-1):
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def np_kl_t2(s, t, temp):
    p, q = np_softmax(t / temp), np_softmax(s / temp)
    return temp ** 2 * np.mean(np.sum(p * (np.log(p) - np.log(q)), -1))


def np_ce(s, y):
    return -np.mean(np.log(np_softmax(s))[np.arange(len(y)), y])


def np_kd(s, t, y, temp, alpha):
    return alpha * np_kl_t2(s, t, temp) + (1 - alpha) * np_ce(s, y)


def np_dkd(s, t, y, alpha, beta, temp):
    ps, pt = np_softmax(s / temp), np_softmax(t / temp)
    n = len(y)
    gt = np.zeros_like(ps)
    gt[np.arange(n), y] = 1
    bs = np.stack([(ps * gt).sum(1), (ps * (1 - gt)).sum(1)], 1)
    bt = np.stack([(pt * gt).sum(1), (pt * (1 - gt)).sum(1)], 1)
    tckd = np.mean(np.sum(bt * (np.log(bt) - np.log(bs)), 1)) * temp ** 2
    nckd = 0.0
    for i in range(n):  # softmax over the non-target classes only
        keep = np.arange(s.shape[1]) != y[i]
        qs, qt = np_softmax(s[i, keep] / temp), np_softmax(t[i, keep] / temp)
        nckd += np.sum(qt * (np.log(qt) - np.log(qs)))
    nckd = nckd / n * temp ** 2
    return alpha * tckd + beta * nckd


def np_pearson(a, b):
    a, b = a - a.mean(), b - b.mean()
    return (a * b).sum() / (np.sqrt((a * a).sum()) * np.sqrt((b * b).sum()))


def np_dist(s, t, beta, gamma, temp):
    q, p = np_softmax(s / temp), np_softmax(t / temp)
    inter = np.mean([1 - np_pearson(q[i], p[i]) for i in range(len(q))])
    intra = np.mean([1 - np_pearson(q[:, j], p[:, j]) for j in range(q.shape[1])])
    return temp ** 2 * (beta * inter + gamma * intra)


def np_huber(x):
    return np.where(np.abs(x) < 1, 0.5 * x * x, np.abs(x) - 0.5)


def np_rkd_distance(s, t):
    def nd(e):
        n = len(e)
        d = np.array([[np.linalg.norm(e[i] - e[j]) for j in range(n)] for i in range(n)])
        return d / (d.sum() / (n * n - n))
    return np.mean(np_huber(nd(s) - nd(t)))


def np_rkd_angle(s, t):
    def ang(e):
        n = len(e)
        out = np.zeros((n, n, n))
        for i in range(n):
            for j in range(n):
                for k in range(n):
                    u, v = e[j] - e[i], e[k] - e[i]
                    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
                    out[i, j, k] = 0.0 if nu == 0 or nv == 0 else u @ v / (nu * nv)
        return out
    return np.mean(np_huber(ang(s) - ang(t)))


def np_pkt(s, t, eps=1e-7):
    def probs(e):
        e = e / (np.linalg.norm(e, axis=1, keepdims=True) + eps)
        k = (e @ e.T + 1) / 2
        return k / k.sum(1, keepdims=True)
    p, q = probs(t), probs(s)
    return np.mean(p * np.log((p + eps) / (q + eps)))


def np_sp(s, t):
    def g(f):
        f = f.reshape(len(f), -1)
        m = f @ f.T
        return m / np.linalg.norm(m, axis=1, keepdims=True)
    return np.sum((g(s) - g(t)) ** 2) / len(s) ** 2


def np_at(s, t):
    def a(f):
        m = (f ** 2).mean(-1).reshape(len(f), -1)
        return m / np.linalg.norm(m, axis=1, keepdims=True)
    return np.mean((a(s) - a(t)) ** 2)


def fd_grad(f, x, h=1e-5):
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        g[idx] = (f(xp) - f(xm)) / (2 * h)
    return g


FEAT_S = RNG.normal(size=(5, 3, 3, 4))
FEAT_T = RNG.normal(size=(5, 3, 3, 7))
EMB_S = RNG.normal(size=(5, 4))
EMB_T = RNG.normal(size=(5, 6))

CASES = {
    "kd": (lambda s, t: kd.kd_loss(s, t, jnp.asarray(LABELS), 3.0, 0.7),
           lambda s, t: np_kd(s, t, LABELS, 3.0, 0.7), S_LOGITS, T_LOGITS),
    "soft_kl": (lambda s, t: kd.soft_target_kl(s, t, 20.0),
                lambda s, t: np_kl_t2(s, t, 20.0), S_LOGITS, T_LOGITS),
    "mse": (kd.logit_mse, lambda s, t: np.mean((s - t) ** 2), S_LOGITS, T_LOGITS),
    "dkd": (lambda s, t: kd.dkd_loss(s, t, jnp.asarray(LABELS), alpha=1.0, beta=8.0,
                                     temperature=4.0),
            lambda s, t: np_dkd(s, t, LABELS, 1.0, 8.0, 4.0), S_LOGITS, T_LOGITS),
    "dist": (lambda s, t: kd.dist_loss(s, t, beta=1.0, gamma=2.0, temperature=2.0),
             lambda s, t: np_dist(s, t, 1.0, 2.0, 2.0), S_LOGITS, T_LOGITS),
    "rkd_distance": (kd.rkd_distance, np_rkd_distance, EMB_S, EMB_T),
    "rkd_angle": (kd.rkd_angle, np_rkd_angle, EMB_S, EMB_T),
    "pkt": (kd.pkt_loss, np_pkt, EMB_S, EMB_T),
    "sp": (kd.sp_loss, np_sp, FEAT_S, FEAT_T),
    "at": (kd.attention_transfer, np_at, FEAT_S, FEAT_T),
    "hint": (kd.hint_loss, lambda s, t: np.mean((s - t) ** 2), FEAT_S, FEAT_S[::-1] * 0.5),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_loss_value_and_grad_match_numpy(name):
    fn, ref, s, t = CASES[name]
    f = jax.jit(fn)
    s32, t32 = jnp.asarray(s, jnp.float32), jnp.asarray(t, jnp.float32)
    np.testing.assert_allclose(float(f(s32, t32)), ref(s, t), rtol=2e-4, atol=1e-6)
    g = jax.jit(jax.grad(fn))(s32, t32)
    g_ref = fd_grad(lambda x: ref(x, t), s)
    np.testing.assert_allclose(np.asarray(g), g_ref, rtol=2e-3, atol=2e-5)
    # The teacher is frozen: no gradient flows to its side.
    gt = jax.grad(f, argnums=1)(s32, t32)
    assert float(jnp.max(jnp.abs(gt))) == 0.0


def test_losses_without_jit_match_jit():
    """The eager (non-jit) path gives the same values as the jitted one."""
    for name in ("kd", "at"):
        fn, _, s, t = CASES[name]
        s32, t32 = jnp.asarray(s, jnp.float32), jnp.asarray(t, jnp.float32)
        np.testing.assert_allclose(float(fn(s32, t32)), float(jax.jit(fn)(s32, t32)),
                                   rtol=1e-5, atol=1e-7, err_msg=name)


def test_kd_gradient_closed_form():
    """d/dz [α T² KL + (1-α) CE] = α T (q_T − p_T)/B + (1-α)(q_1 − onehot)/B."""
    temp, alpha = 5.0, 0.6
    g = jax.grad(lambda s: kd.kd_loss(s, jnp.asarray(T_LOGITS, jnp.float32),
                                      jnp.asarray(LABELS), temp, alpha))(
        jnp.asarray(S_LOGITS, jnp.float32))
    onehot = np.eye(C)[LABELS]
    ref = (alpha * temp * (np_softmax(S_LOGITS / temp) - np_softmax(T_LOGITS / temp))
           + (1 - alpha) * (np_softmax(S_LOGITS) - onehot)) / B
    np.testing.assert_allclose(np.asarray(g), ref, rtol=1e-4, atol=1e-6)


def test_t_squared_keeps_gradient_magnitude():
    """With the T² factor the soft-target gradient magnitude barely changes with T
    (→ (z − v)/(N·B) for large T); without it, it shrinks like 1/T²."""
    s = jnp.asarray(S_LOGITS - S_LOGITS.mean(1, keepdims=True), jnp.float32)
    t = jnp.asarray(T_LOGITS - T_LOGITS.mean(1, keepdims=True), jnp.float32)

    def gnorm(temp, scaled):
        def f(z):
            val = kd.soft_target_kl(z, t, temp)
            return val if scaled else val / temp ** 2
        return float(jnp.linalg.norm(jax.grad(f)(s)))

    r_scaled = gnorm(20.0, True) / gnorm(10.0, True)
    r_raw = gnorm(20.0, False) / gnorm(10.0, False)
    assert abs(r_scaled - 1.0) < 0.05, r_scaled
    assert abs(r_raw - 0.25) < 0.02, r_raw
    # The large-T limit: gradient → (z − v) / (C · B) for zero-mean logits.
    g = jax.grad(lambda z: kd.soft_target_kl(z, t, 200.0))(s)
    np.testing.assert_allclose(np.asarray(g), (np.asarray(s) - np.asarray(t)) / (C * B),
                               rtol=0.02, atol=1e-3)


def test_alpha_endpoints():
    s, t, y = (jnp.asarray(S_LOGITS, jnp.float32), jnp.asarray(T_LOGITS, jnp.float32),
               jnp.asarray(LABELS))
    np.testing.assert_allclose(float(kd.kd_loss(s, t, y, 4.0, 0.0)), np_ce(S_LOGITS, LABELS),
                               rtol=1e-5)
    np.testing.assert_allclose(float(kd.kd_loss(s, t, y, 4.0, 1.0)),
                               np_kl_t2(S_LOGITS, T_LOGITS, 4.0), rtol=1e-5)


def test_rkd_invariances():
    e = jnp.asarray(EMB_T, jnp.float32)
    assert float(kd.rkd_distance(3.0 * e, e)) < 1e-6       # scale invariant
    assert float(kd.rkd_angle(2.0 * e + 1.0, e)) < 1e-6    # scale and shift invariant


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_bad_temperature(bad):
    with pytest.raises(ConfigError, match="temperature"):
        kd.soft_target_kl(jnp.zeros((2, 3)), jnp.zeros((2, 3)), bad)
    with pytest.raises(ConfigError, match="temperature"):
        kd.loss_state(temperature=bad)


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_bad_alpha(bad):
    with pytest.raises(ConfigError, match=r"alpha.*\[0, 1\]"):
        kd.kd_loss(jnp.zeros((2, 3)), jnp.zeros((2, 3)), jnp.zeros(2, jnp.int32), 2.0, bad)
    with pytest.raises(ConfigError, match="alpha"):
        kd.loss_state(alpha=bad)


def test_class_count_mismatch():
    with pytest.raises(ConfigError, match=r"\(2, 10\).*\(2, 5\)"):
        kd.soft_target_kl(jnp.zeros((2, 10)), jnp.zeros((2, 5)), 2.0)
    with pytest.raises(ConfigError, match="classes"):
        kd.logit_objective("dkd", jnp.zeros((2, 10)), jnp.zeros((2, 5)),
                           jnp.zeros(2, jnp.int32), kd.loss_state())


def test_feature_shape_errors():
    with pytest.raises(ConfigError, match="student feature shape"):
        kd.hint_loss(jnp.zeros((2, 4)), jnp.zeros((2, 8)))
    with pytest.raises(ConfigError, match="spatial"):
        kd.attention_transfer(jnp.zeros((2, 4, 4, 3)), jnp.zeros((2, 5, 5, 3)))
    with pytest.raises(ConfigError, match="batch"):
        kd.sp_loss(jnp.zeros((2, 4)), jnp.zeros((3, 4)))


def test_unknown_method_and_loss_state_key():
    with pytest.raises(ConfigError, match="distill.method"):
        kd.logit_objective("kdd", jnp.zeros((2, 3)), jnp.zeros((2, 3)),
                           jnp.zeros(2, jnp.int32), kd.loss_state())
    with pytest.raises(ConfigError, match="temprature"):
        kd.loss_state(temprature=2.0)


def test_projection_matches_numpy_dense_and_conv():
    key = jax.random.key(0)
    p = kd.init_projection(key, (5, 3, 3, 4), (5, 3, 3, 7))
    out = kd.project(p, jnp.asarray(FEAT_S, jnp.float32))
    ref = FEAT_S @ np.asarray(p["kernel"]) + np.asarray(p["bias"])
    np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match=r"\(5, 3, 3, 4\).*\(5, 4, 4, 7\)"):
        kd.init_projection(key, (5, 3, 3, 4), (5, 4, 4, 7))


@pytest.mark.parametrize("labels, needle", [
    ([3, 12], r"got 12 at row 1; allowed: whole numbers in \[0, 9\]"),
    ([-1, 2], r"got -1 at row 0"),
    ([1.5, 2.0], r"got 1.5 at row 0"),
    ([1, 2, 3], r"got shape \(3,\) for logits of shape \(2, 10\)"),
])
def test_kd_loss_refuses_bad_labels(labels, needle):
    from jaxcomp.core.errors import ConfigError
    from jaxcomp.distill.logits import kd_loss

    s, t = jnp.zeros((2, 10)), jnp.ones((2, 10))
    with pytest.raises(ConfigError, match=needle):
        kd_loss(s, t, jnp.asarray(labels), 2.0, 0.5)


def test_out_of_range_label_under_jit_is_nan_not_another_class():
    from jaxcomp.distill.logits import hard_cross_entropy

    logits = jnp.asarray(np.random.default_rng(0).normal(size=(3, 10)), jnp.float32)
    fn = jax.jit(hard_cross_entropy)
    good = float(fn(logits, jnp.array([1, 2, 9])))
    ref = -np.mean(np.take_along_axis(np.asarray(jax.nn.log_softmax(logits)),
                                      np.array([[1], [2], [9]]), axis=1))
    np.testing.assert_allclose(good, ref, rtol=1e-6)
    assert np.isnan(float(fn(logits, jnp.array([1, 2, 12]))))
    assert np.isnan(float(fn(logits, jnp.array([1, -1, 3]))))
