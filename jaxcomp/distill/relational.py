"""Relational knowledge distillation (RKD): transfer the *structure* of the
teacher's embedding — pairwise distances and triplet angles — rather than the
embeddings themselves, so student and teacher widths may differ.

* distance term: Huber loss between the pairwise Euclidean distance matrices,
  each divided by its mean non-zero distance;
* angle term: Huber loss between the cosines of the angles ``∠(e_i − e_j, e_k − e_j)``.

Park et al. weight them ``λ_D = 1``, ``λ_A = 2`` (the authors' code uses 25 and 50).

References:
  Park, Kim, Lu, Cho. "Relational Knowledge Distillation", CVPR 2019.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp.distill.relational import rkd_angle, rkd_distance
    >>> t = jax.random.normal(jax.random.key(0), (6, 5))
    >>> float(rkd_distance(2.0 * t, t)), round(float(rkd_angle(3.0 * t, t)), 6)
    (0.0, 0.0)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxcomp.core.errors import ConfigError

_EPS = 1e-12


def _flat(x: jax.Array) -> jax.Array:
    return x.astype(jnp.float32).reshape((x.shape[0], -1))


def _check_batch(s: jax.Array, t: jax.Array, what: str) -> None:
    if jnp.shape(s)[0] != jnp.shape(t)[0]:
        raise ConfigError(f"{what}: student batch {jnp.shape(s)[0]} != teacher batch "
                          f"{jnp.shape(t)[0]}")


def huber(x: jax.Array, delta: float = 1.0) -> jax.Array:
    """Elementwise smooth-L1 (Huber with ``delta``): ``½x²/δ`` inside, ``|x| − ½δ`` outside."""
    ax = jnp.abs(x)
    return jnp.where(ax < delta, 0.5 * x * x / delta, ax - 0.5 * delta)


def pairwise_distances(e: jax.Array) -> jax.Array:
    """Euclidean distances between the rows of ``e`` (zero diagonal, safe gradient)."""
    sq = jnp.sum(e * e, -1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * e @ e.T
    n = e.shape[0]
    off = 1.0 - jnp.eye(n, dtype=e.dtype)
    return jnp.sqrt(jnp.maximum(d2, _EPS)) * off


def _normalized_distances(e: jax.Array) -> jax.Array:
    d = pairwise_distances(e)
    n = e.shape[0]
    mean = jnp.sum(d) / jnp.maximum(n * n - n, 1)
    return d / (mean + _EPS)


def rkd_distance(student_emb: jax.Array, teacher_emb: jax.Array) -> jax.Array:
    """Mean Huber loss between mean-normalized pairwise distance matrices."""
    _check_batch(student_emb, teacher_emb, "rkd_distance")
    t = jax.lax.stop_gradient(_normalized_distances(_flat(teacher_emb)))
    return jnp.mean(huber(_normalized_distances(_flat(student_emb)) - t))


def _angles(e: jax.Array) -> jax.Array:
    diff = e[None, :, :] - e[:, None, :]  # diff[i, j] = e_j - e_i
    norm = jnp.sqrt(jnp.maximum(jnp.sum(diff * diff, -1, keepdims=True), _EPS))
    unit = diff / norm
    return jnp.einsum("ijd,ikd->ijk", unit, unit)


def rkd_angle(student_emb: jax.Array, teacher_emb: jax.Array) -> jax.Array:
    """Mean Huber loss between the triplet angle cosines (``O(N³)`` in the batch)."""
    _check_batch(student_emb, teacher_emb, "rkd_angle")
    t = jax.lax.stop_gradient(_angles(_flat(teacher_emb)))
    return jnp.mean(huber(_angles(_flat(student_emb)) - t))


def rkd_loss(student_emb: jax.Array, teacher_emb: jax.Array, distance_weight=1.0,
             angle_weight=2.0) -> jax.Array:
    """``λ_D · distance + λ_A · angle`` (the paper's default weights 1 and 2)."""
    from jaxcomp.distill.logits import check_weight

    check_weight("rkd.distance_weight", distance_weight)
    check_weight("rkd.angle_weight", angle_weight)
    return (jnp.asarray(distance_weight, jnp.float32) * rkd_distance(student_emb, teacher_emb)
            + jnp.asarray(angle_weight, jnp.float32) * rkd_angle(student_emb, teacher_emb))
