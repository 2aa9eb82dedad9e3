"""Feature capture (linen and NNX), the jitted teacher/student step (no retrace
when T changes, vmap over T, cached == live teacher), composition with
compression transforms, and the bad-input errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxcomp as jc
import jaxcomp.distill as kd
from jaxcomp.core.errors import ConfigError
from jaxcomp.models import get_model

D, K = 6, 3
X = jnp.asarray(np.random.default_rng(0).normal(size=(8, D)), jnp.float32)
Y = jnp.asarray(np.arange(8) % K, jnp.int32)


def models(student_feats=(8, 5), teacher_feats=(16, 5), k_teacher=K):
    s = get_model("mlp", input_shape=(D,), num_classes=K, features=student_feats)
    t = get_model("mlp", input_shape=(D,), num_classes=k_teacher, features=teacher_feats)
    tv = t.init(jax.random.key(1), X[:1])
    return s, t, tv


def batch(d, **numbers):
    return {"x": X, "y": Y, "loss_state": d.loss_state(**numbers)}


# ------------------------------------------------------------------- capture
@pytest.mark.parametrize("use_jit", [True, False])
def test_capture_linen_matches_manual(use_jit):
    s, _, _ = models()
    params, ms = s.init(jax.random.key(0), X[:1])
    fm = kd.capture(s, ["Dense_[01]"])
    fn = jax.jit(lambda p, x: fm.apply(p, ms, x)) if use_jit else (lambda p, x: fm.apply(p, ms,
                                                                                         x))
    out, feats, _ = fn(params, X)
    h0 = np.asarray(X) @ np.asarray(params["Dense_0"]["kernel"]) + np.asarray(
        params["Dense_0"]["bias"])
    np.testing.assert_allclose(np.asarray(feats["Dense_0"]), h0, rtol=1e-5, atol=1e-5)
    h1 = np.maximum(h0, 0) @ np.asarray(params["Dense_1"]["kernel"]) + np.asarray(
        params["Dense_1"]["bias"])
    np.testing.assert_allclose(np.asarray(feats["Dense_1"]), h1, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out), np.asarray(s.apply(params, ms, X)[0]),
                               rtol=1e-6)


@pytest.mark.parametrize("use_jit", [True, False])
def test_capture_nnx_matches_manual(use_jit):
    m = get_model("nnx_mlp", input_shape=(D,), num_classes=K, features=(8,))
    params, ms = m.init(jax.random.key(0), X[:1])
    fm = kd.capture(m, ["layers/0"])
    fn = jax.jit(lambda p, s, x: fm.apply(p, s, x)) if use_jit else fm.apply
    out, feats, _ = fn(params, ms, X)
    w = np.asarray(params["layers"][0]["kernel"][...])
    b = np.asarray(params["layers"][0]["bias"][...])
    np.testing.assert_allclose(np.asarray(feats["layers/0"]), np.asarray(X) @ w + b, rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_allclose(np.asarray(out), np.asarray(m.apply(params, ms, X)[0]),
                               rtol=1e-6)


def test_capture_rule_matching_nothing():
    s, _, _ = models()
    params, ms = s.init(jax.random.key(0), X[:1])
    with pytest.raises(ConfigError, match="'Conv_0' matches no module.*Dense"):
        kd.capture(s, ["Conv_0"]).apply(params, ms, X)


# ---------------------------------------------------------------------- step
def test_kd_step_matches_manual_gradient_step():
    s, t, tv = models()
    tx = optax.sgd(0.1)
    d = kd.distiller(s, t, tx, method="kd", donate=False)
    st = d.init(jax.random.key(0), X[:1], tv)
    b = batch(d, temperature=3.0, alpha=0.7)
    new, m = d.step(st, b, tv)
    t_logits = t.apply(*tv, X)[0]

    def ref_loss(p):
        z = s.apply(p, {}, X)[0]
        return kd.kd_loss(z, t_logits, Y, 3.0, 0.7)

    loss, g = jax.value_and_grad(ref_loss)(st.params["student"])
    np.testing.assert_allclose(float(m["loss"]), float(loss), rtol=1e-5)
    expect = jax.tree.map(lambda p, gg: p - 0.1 * gg, st.params["student"], g)
    jax.tree.map(lambda a, b_: np.testing.assert_allclose(a, b_, rtol=1e-5, atol=1e-6),
                 new.params["student"], expect)


def test_cached_teacher_equals_live_teacher():
    s, t, tv = models()
    d = kd.distiller(s, t, optax.adam(1e-2), method="kd",
                     features=[kd.FeatureTerm("Dense_1", "Dense_1", "sp")], donate=False)
    st = d.init(jax.random.key(0), X[:1], tv)
    live, m_live = d.step(st, batch(d), tv)
    cache = kd.teacher_outputs(t, *tv, np.asarray(X), batch_size=8, rules=["Dense_1"])
    cb = {**batch(d), **{k: jnp.asarray(v) for k, v in cache.items()}}
    cached, m_cached = d.step(st, cb, None)
    np.testing.assert_allclose(float(m_live["loss"]), float(m_cached["loss"]), rtol=1e-6)
    jax.tree.map(lambda a, b_: np.testing.assert_allclose(a, b_, rtol=1e-6, atol=1e-7),
                 live.params, cached.params)


def test_changing_temperature_does_not_retrace_and_vmap_over_t():
    s, t, tv = models()
    traces = []
    d = kd.distiller(s, t, optax.sgd(0.05), method="kd", donate=False)
    st = d.init(jax.random.key(0), X[:1], tv)

    def counted(state, b, tvars):
        traces.append(1)
        return d.step_fn(state, b, tvars)

    step = jax.jit(counted)
    outs = {}
    for temp in (1.0, 4.0, 20.0):
        outs[temp] = step(st, batch(d, temperature=temp, alpha=0.5), tv)
    assert len(traces) == 1
    assert float(outs[1.0][1]["loss"]) != float(outs[20.0][1]["loss"])
    # vmap over the temperature: equal to the one-by-one results.
    temps = jnp.array([1.0, 4.0, 20.0])
    ls = d.loss_state(temperature=temps, alpha=jnp.full(3, 0.5))
    vb = {"x": X, "y": Y, "loss_state": ls}
    axes = {"x": None, "y": None, "loss_state": jax.tree.map(lambda v: 0 if v.ndim else None, ls)}
    vs, vm = jax.vmap(d.step_fn, in_axes=(None, axes, None))(st, vb, tv)
    for i, temp in enumerate((1.0, 4.0, 20.0)):
        np.testing.assert_allclose(float(vm["loss"][i]), float(outs[temp][1]["loss"]),
                                   rtol=1e-5)
        np.testing.assert_allclose(np.asarray(vs.params["student"]["Dense_0"]["kernel"][i]),
                                   np.asarray(outs[temp][0].params["student"]["Dense_0"]
                                              ["kernel"]), rtol=1e-5, atol=1e-6)


def test_hint_projection_learns_and_all_feature_losses_run():
    s, t, tv = models()
    terms = [kd.FeatureTerm("Dense_0", "Dense_0", "hint"),
             kd.FeatureTerm("Dense_1", "Dense_1", "at"),
             kd.FeatureTerm("Dense_1", "Dense_1", "rkd"),
             kd.FeatureTerm("Dense_0", "Dense_0", "pkt")]
    d = kd.distiller(s, t, optax.adam(3e-2), method="ce", features=terms)
    st = d.init(jax.random.key(0), X[:1], tv)
    assert set(st.params["proj"]) == {"hint_0"}          # widths 8 vs 16 differ; 5 == 5
    b = batch(d, features={"hint_0": 1.0, "at_1": 0.5, "rkd_2": 0.1, "pkt_3": 0.1})
    _, m0 = d.step(st, b, tv)
    first = float(m0["hint_0"])
    st = d.init(jax.random.key(0), X[:1], tv)
    for _ in range(30):
        st, m = d.step(st, b, tv)
    assert float(m["hint_0"]) < 0.5 * first
    assert all(np.isfinite(float(m[k])) for k in ("at_1", "rkd_2", "pkt_3"))


def test_nnx_student_linen_teacher_hint():
    st_model = get_model("nnx_mlp", input_shape=(D,), num_classes=K, features=(8,))
    _, t, tv = models(teacher_feats=(12,))
    d = kd.distiller(st_model, t, optax.adam(1e-2), method="kd",
                     features=[kd.FeatureTerm("layers/0", "Dense_0", "hint")])
    st = d.init(jax.random.key(0), X[:1], tv)
    assert st.params["proj"]["hint_0"]["kernel"].shape == (8, 12)
    st, m = d.step(st, batch(d), tv)
    assert np.isfinite(float(m["loss"]))


# -------------------------------------------------------------------- errors
def test_shape_mismatch_without_projection_names_both():
    s, t, tv = models()
    d = kd.distiller(s, t, optax.sgd(0.1),
                     features=[kd.FeatureTerm("Dense_0", "Dense_0", "hint", projection=False)])
    with pytest.raises(ConfigError, match=r"'Dense_0' has shape \(1, 8\).*'Dense_0' has shape "
                                          r"\(1, 16\).*no projection"):
        d.init(jax.random.key(0), X[:1], tv)


def test_teacher_with_other_class_count():
    s, t, tv = models(k_teacher=K + 2)
    d = kd.distiller(s, t, optax.sgd(0.1), method="kd")
    st = d.init(jax.random.key(0), X[:1], tv)
    with pytest.raises(ConfigError, match=r"\(8, 3\).*\(8, 5\)"):
        d.step(st, batch(d), tv)


def test_feature_rule_matching_no_module():
    s, t, tv = models()
    d = kd.distiller(s, t, optax.sgd(0.1), features=[kd.FeatureTerm("Dense_9", "Dense_0")])
    with pytest.raises(ConfigError, match="Dense_9"):
        d.init(jax.random.key(0), X[:1], tv)


def test_bad_numbers_in_step_config():
    s, t, tv = models()
    d = kd.distiller(s, t, optax.sgd(0.1))
    with pytest.raises(ConfigError, match="temperature"):
        d.loss_state(temperature=-1.0)
    with pytest.raises(ConfigError, match="alpha"):
        d.loss_state(alpha=2.0)
    with pytest.raises(ConfigError, match="distill.method"):
        kd.distiller(s, t, optax.sgd(0.1), method="hinton")
    with pytest.raises(ConfigError, match=r"features\[0\].loss"):
        kd.distiller(s, t, optax.sgd(0.1), features=[kd.FeatureTerm("Dense_0", "Dense_0",
                                                                    "fitnet")])


# --------------------------------------------------------------- composition
def _mask_transform(keep=0.5):
    """A minimal magnitude-mask Transform (the prune package may not exist yet)."""

    def init(params):
        def mask(x):
            if x.ndim < 2:
                return jnp.ones_like(x)
            thr = jnp.quantile(jnp.abs(x), 1 - keep)
            return (jnp.abs(x) >= thr).astype(x.dtype)
        return jax.tree.map(mask, params)

    def apply(params, state):
        return jax.tree.map(lambda p, m: p * m, params, state)

    def update(params, state, *, step, grads=None, key=None):
        return state

    return jc.Transform(init, apply, update)


def _fake_quant_transform(bits=4):
    from jaxcomp.quant import fake_quant
    return jc.stateless(lambda p: jax.tree.map(
        lambda x: fake_quant(x, bits) if x.ndim >= 2 else x, p))


@pytest.mark.parametrize("compose", ["mask", "mask+quant"])
def test_distil_pruned_quantized_student_from_its_dense_self(compose):
    """A pruned (and 4-bit fake-quantized) student distilled from its own dense
    weights: the masked weights stay zero in the forward pass and the KD loss falls."""
    s, _, _ = models()
    dense, _ = s.init(jax.random.key(0), X[:1])
    tv = (dense, {})
    tr = _mask_transform() if compose == "mask" else jc.chain(_mask_transform(),
                                                              _fake_quant_transform())
    d = kd.distiller(s, s, optax.adam(1e-2), method="kd", transform=tr)
    st = d.init(jax.random.key(0), X[:1], tv, params=dense, model_state={})
    b = batch(d, temperature=2.0, alpha=1.0)
    _, m0 = d.step(st, b, tv)
    st = d.init(jax.random.key(0), X[:1], tv, params=dense, model_state={})
    for _ in range(40):
        st, m = d.step(st, b, tv)
    assert float(m["distill"]) < float(m0["distill"])
    eff = tr.apply(st.params["student"], st.comp_state)
    mask = st.comp_state if compose == "mask" else st.comp_state[0]
    k = np.asarray(eff["Dense_0"]["kernel"])
    assert np.all(k[np.asarray(mask["Dense_0"]["kernel"]) == 0] == 0)


def test_fit_with_kd_loss_fn_and_transform():
    """jaxcomp.train.fit + make_loss_fn + a Transform, with live and cached teacher."""
    from jaxcomp.data import synthetic
    from jaxcomp.train import fit

    ds = synthetic(num_train=128, num_test=64, shape=(D,), num_classes=K)
    _, t, tv = models()
    s = get_model("mlp", input_shape=(D,), num_classes=K, features=(8, 5))
    ls = kd.loss_state(temperature=2.0, alpha=0.5)
    live = fit(s, ds, optax.adam(1e-2), epochs=1, batch_size=32, seed=0, progress=False,
               transform=_mask_transform(), loss_state=ls,
               loss_fn=kd.make_loss_fn("kd", teacher=t, teacher_params=tv[0]))
    cache = kd.teacher_outputs(t, *tv, ds.x_train)
    cached = fit(s, ds, optax.adam(1e-2), epochs=1, batch_size=32, seed=0, progress=False,
                 transform=_mask_transform(), loss_state=ls, loss_fn=kd.make_loss_fn("kd"),
                 extra_batch=kd.cached_extra_batch(cache))
    np.testing.assert_allclose(live.history[-1]["train_loss"], cached.history[-1]["train_loss"],
                               rtol=1e-4)
    scan = kd.fit_scan(s, ds, optax.adam(1e-2), epochs=1, batch_size=32, seed=0,
                       transform=_mask_transform(), loss_state=ls,
                       loss_fn=kd.make_loss_fn("kd"), cached=cache)
    np.testing.assert_allclose(scan.history[-1]["train_loss"], cached.history[-1]["train_loss"],
                               rtol=1e-4)


def test_jitter_shifts_by_at_most_max_shift():
    x = jnp.zeros((16, 7, 7, 1)).at[:, 3, 3, 0].set(1.0)
    out = np.asarray(kd.jitter(x, jax.random.key(0), max_shift=2))
    pos = np.argwhere(out[..., 0] == 1.0)
    assert len(pos) == 16
    assert np.all(np.abs(pos[:, 1:] - 3) <= 2) and len({tuple(p[1:]) for p in pos}) > 1
    with pytest.raises(ConfigError, match="max_shift"):
        kd.jitter(x, jax.random.key(0), max_shift=-1)
