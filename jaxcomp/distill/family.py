"""The distillation family of experiment configs (``cfg.distill``).

``setup`` trains (or loads) the teacher — memoized in-process by its config and
the data, so a sweep's settings share one teacher — then sets ``ctx.loss_fn``,
``ctx.loss_state`` (temperature, α and the methods' weights as arrays: the
:data:`VECTOR_KEYS` a vectorized sweep may stack) and, with ``cache_teacher``,
``ctx.cached`` holding the teacher's precomputed logits (one row per training
example). ``after_train`` adds the teacher's test metrics to ``ctx.metrics``.

Methods: ``none`` (off), ``kd``, ``mse``, ``dkd``, ``dist``, ``rkd``, ``pkt``,
``sp`` — see :mod:`jaxcomp.distill.objective`. Feature-level terms (hints,
attention transfer) need student features, which ``jaxcomp.train.fit`` does
not expose; use :func:`jaxcomp.distill.distiller` for those.

Example:
    >>> cfg = default_config()
    >>> cfg.method, cfg.teacher_model, tuple(cfg.teacher_features), cfg.cache_teacher
    ('none', 'mlp', (1200, 1200), True)
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxcomp.core.errors import ConfigError
from jaxcomp.distill.augment import jitter
from jaxcomp.distill.cache import teacher_outputs
from jaxcomp.distill.epochs import fit_scan
from jaxcomp.distill.objective import loss_state, make_loss_fn
from jaxcomp.experiment.ledger import ensure_defaults
from jaxcomp.experiment.plan import Plan
from jaxcomp.experiment.sections.distill import (  # noqa: F401  (the section, public here)
    METHODS,
    VECTOR_KEYS,
    default_config,
    validate,
)
from jaxcomp.flax.model import Model
from jaxcomp.models import get_model
from jaxcomp.train import fit
from jaxcomp.train.step import evaluate

_TEACHERS: dict[str, dict[str, Any]] = {}


def teacher_model(cfg: ml_collections.ConfigDict, input_shape: tuple, num_classes: int) -> Model:
    """The teacher named by ``distill.teacher_model`` (widths/dropout for MLPs)."""
    kw: dict[str, Any] = {}
    if cfg.teacher_model in ("mlp", "nnx_mlp"):
        kw = {"features": tuple(cfg.teacher_features), "dropout": float(cfg.teacher_dropout)}
    return get_model(cfg.teacher_model, input_shape=input_shape, num_classes=num_classes, **kw)


def _teacher_key(cfg: ml_collections.ConfigDict, ctx: Any) -> str:
    tcfg = {k: v for k, v in cfg.items() if k.startswith("teacher") or k == "cache_teacher"}
    ds = ctx.dataset
    data = {"name": ds.name, "n_train": len(ds.x_train), "n_test": len(ds.x_test),
            "classes": ds.num_classes, "shape": list(ds.input_shape),
            "data_cfg": ctx.config.data.to_dict() if "data" in ctx.config else {},
            "batch_size": int(ctx.config.train.batch_size)}
    return json.dumps({"teacher": tcfg, "data": data}, sort_keys=True, default=str)


def _restore(path: str, target: Any) -> Any:
    import orbax.checkpoint as ocp

    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    try:
        with ocp.StandardCheckpointer() as ck:
            return ck.restore(os.path.abspath(path), abstract)
    except Exception as e:
        raise ConfigError(f"distill.teacher_checkpoint={path!r}: cannot restore a teacher of "
                          f"this config from it ({type(e).__name__}: {str(e)[:300]})") from None


def _save(path: str, tree: Any) -> None:
    import orbax.checkpoint as ocp

    with ocp.StandardCheckpointer() as ck:
        ck.save(os.path.abspath(path), tree)


def get_teacher(cfg: ml_collections.ConfigDict, ctx: Any) -> dict[str, Any]:
    """Train (or load from ``teacher_checkpoint``) the teacher; memoized in-process.

    Returns ``{"model", "params", "model_state", "metrics", "cache"}``.
    """
    key = _teacher_key(cfg, ctx)
    if key in _TEACHERS:
        return _TEACHERS[key]
    ds = ctx.dataset
    model = teacher_model(cfg, ds.input_shape, ds.num_classes)
    tx = optax.adam(cfg.teacher_learning_rate)
    ckpt = cfg.teacher_checkpoint
    params, ms = model.init(jax.random.key(cfg.teacher_seed), jnp.asarray(ds.x_train[:1]))
    if ckpt and os.path.isdir(ckpt):
        params = _restore(ckpt, params)
    else:
        kw = dict(epochs=cfg.teacher_epochs, batch_size=ctx.config.train.batch_size,
                  seed=cfg.teacher_seed, eval_every=max(cfg.teacher_epochs, 1))
        if cfg.teacher_jitter:  # augmentation lives in the scanned epoch
            res = fit_scan(model, ds, tx, **kw, augment=lambda x, k: jitter(
                x, k, int(cfg.teacher_jitter)))
        else:  # fit scans MLPs; convolutions run as jitted steps, >2x faster on XLA:CPU
            res = fit(model, ds, tx, **kw, progress=False)
        params, ms = res.state.params, res.state.model_state
        if ckpt:
            _save(ckpt, params)
    out_shape = jax.eval_shape(lambda p, s, x: model.apply(p, s, x)[0], params, ms,
                               jnp.asarray(ds.x_train[:1])).shape
    if out_shape[-1] != ds.num_classes:
        raise ConfigError(f"distill: the teacher predicts {out_shape[-1]} classes but the "
                          f"dataset {ds.name!r} has {ds.num_classes}")
    metrics = evaluate(model, params, ms, ds.x_test, ds.y_test)
    cache = teacher_outputs(model, params, ms, ds.x_train) if cfg.cache_teacher else None
    _TEACHERS[key] = {"model": model, "params": params, "model_state": ms,
                      "metrics": metrics, "cache": cache}
    return _TEACHERS[key]


def make_loss_state(cfg: ml_collections.ConfigDict) -> dict[str, jax.Array]:
    """The :data:`VECTOR_KEYS` of ``cfg`` as float32 arrays."""
    return loss_state(**{k: cfg[k] for k in VECTOR_KEYS})


def plan(cfg: ml_collections.ConfigDict, ctx: Any) -> Plan:
    """Train (or load) the teacher; the plan's loss distills from it, reading the
    teacher's cached logits (one row per training example) or running it live."""
    validate(cfg)
    teacher = get_teacher(cfg, ctx)
    common = dict(loss_state=make_loss_state(cfg), artifacts={"distill_teacher": teacher},
                  after_train=lambda c: after_train(cfg, c))
    if cfg.cache_teacher:
        return Plan("distill", loss_fn=make_loss_fn(cfg.method),
                    cached={"teacher_logits": teacher["cache"]["teacher_logits"]}, **common)
    return Plan("distill", loss_fn=make_loss_fn(cfg.method, teacher=teacher["model"],
                                                teacher_params=teacher["params"],
                                                teacher_state=teacher["model_state"]),
                **common)


def after_train(cfg: ml_collections.ConfigDict, ctx: Any) -> None:
    """Teacher test accuracy / NLL and size into ``ctx.metrics``; the student is
    stored as it is (the ledger's dense ``stored_bytes`` / ``flops_effective``)."""
    ensure_defaults(ctx.ledger)
    teacher = ctx.artifacts.get("distill_teacher") or get_teacher(cfg, ctx)
    ctx.metrics["teacher_test_accuracy"] = teacher["metrics"]["accuracy"]
    ctx.metrics["teacher_test_nll"] = teacher["metrics"]["nll"]
    ctx.metrics["teacher_params"] = int(sum(x.size for x in jax.tree.leaves(teacher["params"])))
    if "test_accuracy" in ctx.metrics:
        ctx.metrics["distill_gap_to_teacher"] = (teacher["metrics"]["accuracy"]
                                                 - ctx.metrics["test_accuracy"])


def clear_cache() -> None:
    """Forget memoized teachers (tests, long sessions)."""
    _TEACHERS.clear()
