"""The distillation experiment family: run_experiment with a tiny KD config,
teacher memoization, the sweep contract (VECTOR_KEYS only change loss_state
arrays) and config errors."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxcomp.core.errors import ConfigError
from jaxcomp.distill import family
from jaxcomp.experiment import base_config, run_experiment
from jaxcomp.experiment.plan import apply_plan
from jaxcomp.experiment.run import RunContext, build_model, load_data


def tiny(method="kd", **kw):
    cfg = base_config()
    cfg.data.name = "digits"
    cfg.model.name = "mlp"
    cfg.train.epochs = 1
    cfg.train.batch_size = 64
    d = cfg.distill
    d.method = method
    d.teacher_features = (32, 32)
    d.teacher_epochs = 3
    d.teacher_learning_rate = 3e-3
    for k, v in kw.items():
        d[k] = v
    return cfg


def test_run_experiment_tiny_kd_records_teacher_metrics():
    family.clear_cache()
    rec = run_experiment(tiny("kd", temperature=4.0, alpha=0.7))
    m = rec["metrics"]
    assert 0.0 <= m["test_accuracy"] <= 1.0 and np.isfinite(m["test_nll"])
    assert m["teacher_test_accuracy"] > 0.5
    assert m["teacher_params"] == 64 * 32 + 32 + 32 * 32 + 32 + 32 * 10 + 10
    assert rec["config"]["distill"]["method"] == "kd"


def _ctx(cfg):
    ds = load_data(cfg)
    return RunContext(cfg, ds, build_model(cfg, ds))


def test_setup_memoizes_teacher_and_keeps_numbers_in_loss_state(monkeypatch):
    family.clear_cache()
    calls = []
    real = family.fit  # a teacher without jitter trains through fit
    monkeypatch.setattr(family, "fit", lambda *a, **k: calls.append(1) or real(*a, **k))
    ctxs = []
    for temp, alpha in ((2.0, 0.5), (8.0, 0.9)):
        cfg = tiny("kd", temperature=temp, alpha=alpha, cache_teacher=False)
        ctx = _ctx(cfg)
        apply_plan(ctx, family.plan(cfg.distill, ctx))
        ctxs.append(ctx)
    assert len(calls) == 1  # one teacher for both settings
    assert float(ctxs[0].loss_state["temperature"]) == 2.0
    assert float(ctxs[1].loss_state["alpha"]) == np.float32(0.9)
    # Sweep contract: the first setting's loss_fn given the second's loss_state
    # behaves exactly like the second setting's loss_fn.
    x = ctxs[0].dataset.x_train[:16]
    y = ctxs[0].dataset.y_train[:16]
    logits = jax.random.normal(jax.random.key(0), (16, 10))
    b = {"x": x, "y": y, "loss_state": ctxs[1].loss_state}
    a0, _ = ctxs[0].loss_fn(logits, b)
    a1, _ = ctxs[1].loss_fn(logits, b)
    assert float(a0) == float(a1)
    assert set(family.VECTOR_KEYS) <= set(ctxs[0].loss_state)


def test_cached_teacher_setup_serves_teacher_logits():
    family.clear_cache()
    cfg = tiny("dkd")
    ctx = _ctx(cfg)
    apply_plan(ctx, family.plan(cfg.distill, ctx))
    assert ctx.extra_batch is None  # explicit arrays, no Python callback
    logits = ctx.cached["teacher_logits"]
    assert logits.shape == (len(ctx.dataset.x_train), ctx.dataset.num_classes)
    t = ctx.artifacts["distill_teacher"]
    ref = t["model"].apply(t["params"], t["model_state"], ctx.dataset.x_train[[0, 5, 7]])[0]
    np.testing.assert_allclose(logits[[0, 5, 7]], np.asarray(ref), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("key,value,match", [
    ("temperature", 0.0, r"distill.temperature.*\(0, inf\]"),
    ("alpha", 1.5, r"distill.alpha.*\[0, 1\]"),
    ("method", "hinton", "distill.method"),
    ("teacher_model", "resnet", "distill.teacher_model"),
])
def test_config_errors(key, value, match):
    cfg = tiny("kd")
    cfg.distill[key] = value
    with pytest.raises(ConfigError, match=match):
        family.plan(cfg.distill, _ctx(cfg))


def test_teacher_checkpoint_roundtrip_and_class_mismatch(tmp_path):
    family.clear_cache()
    path = str(tmp_path / "teacher")
    cfg = tiny("kd", teacher_checkpoint=path, teacher_epochs=1)
    ctx = _ctx(cfg)
    apply_plan(ctx, family.plan(cfg.distill, ctx))
    saved = ctx.artifacts["distill_teacher"]["params"]
    family.clear_cache()
    ctx2 = _ctx(cfg)
    apply_plan(ctx2, family.plan(cfg.distill, ctx2))
    jax.tree.map(np.testing.assert_array_equal, saved, ctx2.artifacts["distill_teacher"]["params"])
    family.clear_cache()
    bad = tiny("kd", teacher_checkpoint=path, teacher_features=(16, 16))
    with pytest.raises(ConfigError, match="teacher_checkpoint"):
        family.plan(bad.distill, _ctx(bad))


def test_teacher_training_path_scans_only_with_jitter(monkeypatch):
    """A teacher without input jitter trains through `fit` (per-step jitted calls for
    convolutions, which XLA:CPU runs far slower inside a scan); one with jitter through
    the scanned epoch that applies it. Both reach the same kind of teacher."""
    calls = []
    real_fit, real_scan = family.fit, family.fit_scan
    monkeypatch.setattr(family, "fit", lambda *a, **k: calls.append("fit") or real_fit(*a, **k))
    monkeypatch.setattr(family, "fit_scan",
                        lambda *a, **k: calls.append("scan") or real_scan(*a, **k))
    for jit_px in (0, 1):
        family.clear_cache()
        cfg = tiny("kd", teacher_jitter=jit_px)
        ds = load_data(cfg)
        ctx = RunContext(cfg, ds, build_model(cfg, ds))
        t = family.get_teacher(cfg.distill, ctx)
        assert t["metrics"]["accuracy"] > 0.5
    assert calls == ["fit", "scan"]
    family.clear_cache()
