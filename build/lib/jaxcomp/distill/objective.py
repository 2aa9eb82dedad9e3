"""Distillation objectives on logits, with their numbers in a ``loss_state``.

:func:`loss_state` builds the pytree of float32 arrays (temperature, mixing
weight α and the methods' own weights) that :func:`jaxcomp.train.fit` passes to
the loss as ``batch["loss_state"]``; :func:`logit_objective` computes a method's
loss from student logits, teacher logits and labels, reading every number from
that pytree — so changing T or α, or ``jax.vmap``-ing over them, reuses one
compiled step. :func:`make_loss_fn` gives the ``loss_fn(logits, batch)`` for
``fit``, with the teacher's logits cached in the batch (``teacher_logits``) or
computed by a frozen teacher inside the step.

Methods (``alpha`` mixes the distillation term with hard-label cross-entropy:
``α·distill + (1 − α)·CE``):

* ``kd`` — Hinton et al. 2015: ``T²·KL(p_T ‖ q_T)``;
* ``mse`` — Ba & Caruana 2014: mean squared logit difference;
* ``dkd`` — Zhao et al. 2022: ``TCKD + dkd_beta·NCKD``;
* ``dist`` — Huang et al. 2022: ``dist_beta·inter + dist_gamma·intra``;
* ``rkd`` — Park et al. 2019 on the logits: ``distance + rkd_angle·angle``;
* ``pkt`` — Passalis & Tefas 2018 on the logits;
* ``sp`` — Tung & Mori 2019 on the logits;
* ``ce`` — no distillation (plain cross-entropy; for baselines).

Example:
    >>> import jax.numpy as jnp
    >>> from jaxcomp.distill.objective import logit_objective, loss_state
    >>> ls = loss_state(temperature=2.0, alpha=1.0)
    >>> z = jnp.array([[1.0, 0.0]]); y = jnp.array([0])
    >>> float(logit_objective("kd", z, z, y, ls))
    0.0
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxcomp.core.errors import ConfigError, check_choice, check_range
from jaxcomp.distill.dist import dist_loss
from jaxcomp.distill.dkd import dkd_terms
from jaxcomp.distill.logits import (
    check_alpha,
    check_logits,
    check_temperature,
    hard_cross_entropy,
    logit_mse,
    soft_target_kl,
)
from jaxcomp.distill.relational import rkd_angle, rkd_distance
from jaxcomp.distill.similarity import pkt_loss, sp_loss
from jaxcomp.flax.model import Model

METHODS = ("kd", "mse", "dkd", "dist", "rkd", "pkt", "sp", "ce")

#: Default numbers of every method (the keys of a loss state).
DEFAULTS = {"temperature": 4.0, "alpha": 0.9, "dkd_beta": 8.0, "dist_beta": 1.0,
            "dist_gamma": 1.0, "rkd_angle": 2.0}


def loss_state(**numbers: Any) -> dict[str, jax.Array]:
    """The loss numbers as float32 arrays; unspecified ones take :data:`DEFAULTS`.

    Values are checked (``temperature > 0``, ``0 <= alpha <= 1``, weights ``>= 0``);
    arrays of values (a sweep axis) are checked element by element.

    Example:
        >>> sorted(loss_state(temperature=20.0))[:3]
        ['alpha', 'dist_beta', 'dist_gamma']
    """
    unknown = [k for k in numbers if k not in DEFAULTS]
    if unknown:
        check_choice("distill loss_state key", unknown[0], DEFAULTS)
    vals = {**DEFAULTS, **numbers}
    check_temperature(vals["temperature"])
    check_alpha(vals["alpha"])
    for k in ("dkd_beta", "dist_beta", "dist_gamma", "rkd_angle"):
        check_range(f"distill.{k}", vals[k], 0.0, None)
    return {k: jnp.asarray(v, jnp.float32) for k, v in vals.items()}


def distill_term(method: str, student_logits: jax.Array, teacher_logits: jax.Array,
                 labels: jax.Array, ls: dict[str, jax.Array]) -> jax.Array:
    """The distillation part of ``method`` (without the cross-entropy mix)."""
    t = ls["temperature"]
    if method == "kd":
        return soft_target_kl(student_logits, teacher_logits, t)
    if method == "mse":
        return logit_mse(student_logits, teacher_logits)
    if method == "dkd":
        tckd, nckd = dkd_terms(student_logits, teacher_logits, labels, t)
        return tckd + ls["dkd_beta"] * nckd
    if method == "dist":
        return dist_loss(student_logits, teacher_logits, beta=ls["dist_beta"],
                         gamma=ls["dist_gamma"], temperature=t)
    if method == "rkd":
        check_logits(student_logits, teacher_logits)
        return rkd_distance(student_logits, teacher_logits) + ls["rkd_angle"] * rkd_angle(
            student_logits, teacher_logits)
    if method == "pkt":
        check_logits(student_logits, teacher_logits)
        return pkt_loss(student_logits, teacher_logits)
    if method == "sp":
        check_logits(student_logits, teacher_logits)
        return sp_loss(student_logits, teacher_logits)
    if method == "ce":
        return jnp.zeros((), jnp.float32)
    check_choice("distill.method", method, METHODS)
    raise AssertionError  # unreachable


def logit_objective(method: str, student_logits: jax.Array, teacher_logits: jax.Array,
                    labels: jax.Array, ls: dict[str, jax.Array]) -> jax.Array:
    """``α·distill_term + (1 − α)·CE`` (``ce``: just the cross-entropy)."""
    check_choice("distill.method", method, METHODS)
    ce = hard_cross_entropy(student_logits, labels)
    if method == "ce":
        return ce
    a = ls["alpha"]
    return a * distill_term(method, student_logits, teacher_logits, labels, ls) + (1 - a) * ce


LossFn = Callable[[jax.Array, dict[str, Any]], tuple[jax.Array, dict[str, jax.Array]]]


def make_loss_fn(method: str = "kd", *, teacher: Model | None = None,
                 teacher_params: Any = None, teacher_state: Any = None) -> LossFn:
    """A ``loss_fn(logits, batch) -> (loss, aux)`` for :func:`jaxcomp.train.fit`.

    The teacher's logits come from ``batch["teacher_logits"]`` when present
    (cached, see :mod:`jaxcomp.distill.cache`), else from ``teacher`` run in eval
    mode on ``batch["x"]`` under ``stop_gradient``. The numbers come from
    ``batch["loss_state"]`` (pass ``loss_state=`` to ``fit``), never from Python
    constants, so a sweep over them compiles once.

    Example:
        >>> import jax.numpy as jnp
        >>> fn = make_loss_fn("kd")
        >>> batch = {"y": jnp.array([0]), "teacher_logits": jnp.array([[2.0, 0.0]]),
        ...          "loss_state": loss_state(temperature=4.0, alpha=0.5)}
        >>> loss, aux = fn(jnp.array([[2.0, 0.0]]), batch)
        >>> sorted(aux)
        ['accuracy', 'ce', 'distill']
    """
    check_choice("distill.method", method, METHODS)
    if teacher is not None and teacher_params is None:
        raise ConfigError("distill: a teacher model was given without teacher_params")

    def loss_fn(logits, batch):
        if "loss_state" not in batch:
            raise ConfigError("distill: the batch has no 'loss_state'; pass "
                              "loss_state=jaxcomp.distill.loss_state(...) to fit()")
        ls = batch["loss_state"]
        if "teacher_logits" in batch:
            t_logits = batch["teacher_logits"]
        elif teacher is not None:
            t_logits, _ = teacher.apply(teacher_params, teacher_state or {}, batch["x"],
                                        train=False)
        elif method == "ce":
            t_logits = logits
        else:
            raise ConfigError("distill: no teacher — give teacher= and teacher_params=, or "
                              "cache the teacher's logits as batch['teacher_logits']")
        t_logits = jax.lax.stop_gradient(t_logits)
        check_logits(logits, t_logits)
        ce = hard_cross_entropy(logits, batch["y"])
        dt = distill_term(method, logits, t_logits, batch["y"], ls)
        loss = ce if method == "ce" else ls["alpha"] * dt + (1 - ls["alpha"]) * ce
        acc = jnp.mean((jnp.argmax(logits, -1) == batch["y"]).astype(jnp.float32))
        return loss, {"accuracy": acc, "ce": ce, "distill": dt}

    return loss_fn
