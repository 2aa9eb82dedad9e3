"""DIST: distillation by matching *relations* — Pearson correlation of the
student's and teacher's class probabilities, per example (inter-class) and per
class across the batch (intra-class).

``loss = β·T²·mean_i(1 − ρ(q_i, p_i)) + γ·T²·mean_c(1 − ρ(q_{:,c}, p_{:,c}))``
with ``p = softmax(teacher/T)``, ``q = softmax(student/T)``. Being invariant to
shifts and scales of the probabilities, it tolerates a much stronger teacher.

References:
  Huang, You, Wang, Qian, Xu. "Knowledge Distillation from A Stronger Teacher",
  NeurIPS 2022.

Example:
    >>> import jax.numpy as jnp
    >>> from jaxcomp.distill.dist import dist_loss
    >>> z = jnp.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    >>> round(float(dist_loss(z, z)), 5)
    0.0
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxcomp.distill.logits import check_logits, check_temperature, check_weight

_EPS = 1e-8


def pearson(a: jax.Array, b: jax.Array, axis: int = -1) -> jax.Array:
    """Pearson correlation of ``a`` and ``b`` along ``axis``."""
    a = a - jnp.mean(a, axis=axis, keepdims=True)
    b = b - jnp.mean(b, axis=axis, keepdims=True)
    num = jnp.sum(a * b, axis=axis)
    den = jnp.sqrt(jnp.sum(a * a, axis=axis)) * jnp.sqrt(jnp.sum(b * b, axis=axis))
    return num / (den + _EPS)


def dist_loss(student_logits: jax.Array, teacher_logits: jax.Array, *, beta=1.0, gamma=1.0,
              temperature=1.0) -> jax.Array:
    """β·inter-class + γ·intra-class relation loss (Huang et al. 2022)."""
    check_logits(student_logits, teacher_logits)
    check_temperature(temperature)
    check_weight("dist.beta", beta)
    check_weight("dist.gamma", gamma)
    t = jnp.asarray(temperature, jnp.float32)
    q = jax.nn.softmax(student_logits.astype(jnp.float32) / t, -1)
    p = jax.nn.softmax(jax.lax.stop_gradient(teacher_logits.astype(jnp.float32)) / t, -1)
    inter = jnp.mean(1.0 - pearson(q, p, axis=-1))
    intra = jnp.mean(1.0 - pearson(q, p, axis=0))
    return t * t * (jnp.asarray(beta, jnp.float32) * inter + jnp.asarray(gamma, jnp.float32)
                    * intra)
