"""Similarity-based distillation: probabilistic knowledge transfer (PKT) and
similarity-preserving KD (SP). Both compare batch-by-batch similarity
matrices, so student and teacher feature widths may differ.

* PKT turns cosine similarities (shifted to ``[0, 1]``) into per-row
  conditional probabilities and minimizes ``KL(teacher ‖ student)``.
* SP matches the row-normalized Gram matrices ``G = F Fᵀ``:
  ``‖G_s − G_t‖²_F / b²``.

References:
  Passalis & Tefas. "Learning Deep Representations with Probabilistic Knowledge
  Transfer", ECCV 2018.
  Tung & Mori. "Similarity-Preserving Knowledge Distillation", ICCV 2019.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp.distill.similarity import pkt_loss, sp_loss
    >>> f = jax.random.normal(jax.random.key(0), (5, 3))
    >>> round(float(pkt_loss(f, 2.0 * f)), 6), round(float(sp_loss(f, f)), 6)
    (0.0, 0.0)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxcomp.distill.relational import _check_batch, _flat

_EPS = 1e-7


def _conditional_probs(e: jax.Array) -> jax.Array:
    e = e / (jnp.linalg.norm(e, axis=-1, keepdims=True) + _EPS)
    sim = (e @ e.T + 1.0) / 2.0
    return sim / jnp.sum(sim, axis=1, keepdims=True)


def pkt_loss(student_feat: jax.Array, teacher_feat: jax.Array) -> jax.Array:
    """PKT with the cosine kernel: ``mean_ij p_ij · log((p_ij + ε)/(q_ij + ε))``."""
    _check_batch(student_feat, teacher_feat, "pkt_loss")
    p = jax.lax.stop_gradient(_conditional_probs(_flat(teacher_feat)))
    q = _conditional_probs(_flat(student_feat))
    return jnp.mean(p * jnp.log((p + _EPS) / (q + _EPS)))


def _gram(f: jax.Array) -> jax.Array:
    g = f @ f.T
    return g / jnp.maximum(jnp.linalg.norm(g, axis=1, keepdims=True), 1e-12)


def sp_loss(student_feat: jax.Array, teacher_feat: jax.Array) -> jax.Array:
    """SP: squared Frobenius distance of row-normalized Gram matrices over ``b²``."""
    _check_batch(student_feat, teacher_feat, "sp_loss")
    b = student_feat.shape[0]
    gt = jax.lax.stop_gradient(_gram(_flat(teacher_feat)))
    return jnp.sum(jnp.square(_gram(_flat(student_feat)) - gt)) / (b * b)
