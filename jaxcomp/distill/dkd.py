"""Decoupled knowledge distillation (DKD): the KD loss split into a target-class
term (TCKD) and a non-target-class term (NCKD), weighted separately.

``loss = α·TCKD + β·NCKD`` where TCKD is the binary KL between teacher and
student probabilities of "target class vs the rest" and NCKD is the KL between
their distributions over the non-target classes only, both at temperature T
and multiplied by T². With ``α = 1, β = 1 − p_t(target)`` per example this is
Hinton's KD; the paper decouples them (``β = 8`` on CIFAR-100).

References:
  Zhao, Cui, Song, Qiu, Liang. "Decoupled Knowledge Distillation", CVPR 2022.

Example:
    >>> import jax.numpy as jnp
    >>> from jaxcomp.distill.dkd import dkd_loss
    >>> z = jnp.array([[1.0, 2.0, 0.5]]); y = jnp.array([1])
    >>> float(dkd_loss(z, z, y, alpha=1.0, beta=8.0, temperature=4.0))
    0.0
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxcomp.distill.logits import check_labels, check_logits, check_temperature, check_weight

_EPS = 1e-12


def dkd_terms(student_logits: jax.Array, teacher_logits: jax.Array, labels: jax.Array,
              temperature) -> tuple[jax.Array, jax.Array]:
    """``(TCKD, NCKD)``, each a batch mean already multiplied by T²."""
    check_logits(student_logits, teacher_logits)
    check_labels(student_logits, labels, "dkd labels")
    check_temperature(temperature)
    t = jnp.asarray(temperature, jnp.float32)
    s = student_logits.astype(jnp.float32) / t
    tl = jax.lax.stop_gradient(teacher_logits.astype(jnp.float32)) / t
    gt = jax.nn.one_hot(labels, s.shape[-1], dtype=jnp.float32)
    p_s, p_t = jax.nn.softmax(s, -1), jax.nn.softmax(tl, -1)
    bs = jnp.stack([jnp.sum(p_s * gt, -1), jnp.sum(p_s * (1 - gt), -1)], -1)
    bt = jnp.stack([jnp.sum(p_t * gt, -1), jnp.sum(p_t * (1 - gt), -1)], -1)
    log_bs = jnp.log(jnp.clip(bs, _EPS, 1.0))
    log_bt = jnp.log(jnp.clip(bt, _EPS, 1.0))
    tckd = jnp.mean(jnp.sum(bt * (log_bt - log_bs), -1))
    # Non-target distributions: mask the target class out before the softmax.
    big = 1000.0 * gt
    log_qs = jax.nn.log_softmax(s - big, -1)
    log_qt = jax.nn.log_softmax(tl - big, -1)
    nckd = jnp.mean(jnp.sum(jnp.exp(log_qt) * (log_qt - log_qs) * (1 - gt), -1))
    return t * t * tckd, t * t * nckd


def dkd_loss(student_logits: jax.Array, teacher_logits: jax.Array, labels: jax.Array, *,
             alpha=1.0, beta=8.0, temperature=4.0) -> jax.Array:
    """``α·TCKD + β·NCKD`` (Zhao et al. 2022); add a cross-entropy term separately."""
    check_weight("dkd.alpha", alpha)
    check_weight("dkd.beta", beta)
    tckd, nckd = dkd_terms(student_logits, teacher_logits, labels, temperature)
    return jnp.asarray(alpha, jnp.float32) * tckd + jnp.asarray(beta, jnp.float32) * nckd
