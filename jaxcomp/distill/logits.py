"""Logit-matching losses: Hinton's soft targets (KL at temperature T, times T²)
mixed with cross-entropy, and logit regression (MSE).

All functions are pure, jit- and vmap-safe; ``temperature`` and ``alpha`` may
be traced arrays (read them from a ``loss_state`` so a sweep compiles once).
Losses are means over the batch.

References:
  Hinton, Vinyals, Dean. "Distilling the Knowledge in a Neural Network", 2015.
  Ba & Caruana. "Do Deep Nets Really Need to be Deep?", NeurIPS 2014 (logit MSE).

Example:
    >>> import jax.numpy as jnp
    >>> from jaxcomp.distill.logits import soft_target_kl
    >>> z = jnp.array([[1.0, 2.0, 3.0]])
    >>> float(soft_target_kl(z, z, 4.0))
    0.0
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxcomp.core.errors import ConfigError, check_number


def check_logits(student: jax.Array, teacher: jax.Array, what: str = "distill") -> None:
    """ConfigError unless student and teacher logits have the same (static) shape.

    A teacher trained for a different number of classes is the usual cause.
    """
    if jnp.shape(student) != jnp.shape(teacher):
        raise ConfigError(
            f"{what}: student logits have shape {tuple(jnp.shape(student))} but teacher logits "
            f"have shape {tuple(jnp.shape(teacher))}; the teacher must predict the same "
            f"{jnp.shape(student)[-1] if jnp.ndim(student) else '?'} classes as the student"
        )


def check_temperature(temperature, what: str = "distill.temperature"):
    """ConfigError unless ``temperature > 0`` (traced values: see :mod:`jaxcomp.core.checked`)."""
    return check_number(what, temperature, 0.0, None, lo_open=True)


def check_alpha(alpha, what: str = "distill.alpha"):
    """ConfigError unless ``0 <= alpha <= 1`` (traced values: see :mod:`jaxcomp.core.checked`)."""
    return check_number(what, alpha, 0.0, 1.0)


def check_weight(what: str, weight):
    """ConfigError unless a loss weight is a finite number ``>= 0`` (traced values pass)."""
    return check_number(what, weight, 0.0, None)


def soft_target_kl(student_logits: jax.Array, teacher_logits: jax.Array,
                   temperature) -> jax.Array:
    """``T²·mean KL(p_T ‖ q_T)``, ``p_T = softmax(teacher/T)``, ``q_T = softmax(student/T)``.

    The T² factor keeps the soft-target gradients' magnitude roughly independent
    of T (Hinton et al. 2015, section 2). The teacher side gets no gradient.

    Example:
        >>> import jax.numpy as jnp
        >>> s = jnp.array([[0.0, 0.0]]); t = jnp.array([[0.0, 2.0]])
        >>> round(float(soft_target_kl(s, t, 1.0)), 4)
        0.3278
    """
    check_logits(student_logits, teacher_logits)
    check_temperature(temperature)
    t = jnp.asarray(temperature, jnp.float32)
    teacher_logits = jax.lax.stop_gradient(teacher_logits.astype(jnp.float32))
    log_p = jax.nn.log_softmax(teacher_logits / t, axis=-1)
    log_q = jax.nn.log_softmax(student_logits.astype(jnp.float32) / t, axis=-1)
    kl = jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)
    return t * t * jnp.mean(kl)


def check_labels(logits: jax.Array, labels: jax.Array, what: str = "distill labels") -> None:
    """ConfigError unless ``labels`` are one integer class index per row of ``logits``.

    Shapes and dtypes are checked always; values (in ``[0, classes)``, whole
    numbers) whenever they are concrete. Under ``jit`` an out-of-range label
    makes the loss NaN (see :func:`hard_cross_entropy`) instead of wrapping.

    Example:
        >>> import jax.numpy as jnp
        >>> try:
        ...     check_labels(jnp.zeros((2, 10)), jnp.array([3, 12]))
        ... except ConfigError as e:
        ...     print(str(e).split(";")[0])
        distill labels: got 12 at row 1
    """
    import numpy as np

    n, classes = (jnp.shape(logits)[0], jnp.shape(logits)[-1]) if jnp.ndim(logits) == 2 \
        else (None, None)
    if jnp.ndim(labels) != 1 or n is None or jnp.shape(labels)[0] != n:
        raise ConfigError(f"{what}: got shape {tuple(jnp.shape(labels))} for logits of shape "
                          f"{tuple(jnp.shape(logits))}; need one class index per row ({n},)")
    try:
        y = np.asarray(labels)
    except Exception:  # traced: the loss turns NaN on a bad label
        if not jnp.issubdtype(jnp.asarray(labels).dtype, jnp.integer):
            raise ConfigError(f"{what}: got dtype {jnp.asarray(labels).dtype}; need integer "
                              f"class indices in [0, {classes})") from None
        return
    whole = np.isfinite(y) & (np.floor(y) == y) if np.issubdtype(y.dtype, np.floating) \
        else np.ones(y.shape, bool)
    bad = np.flatnonzero(~whole | (y < 0) | (y >= classes))
    if bad.size:
        i = int(bad[0])
        raise ConfigError(f"{what}: got {y[i].item()!r} at row {i}; allowed: whole numbers in "
                          f"[0, {classes - 1}] ({bad.size} bad label(s) in the batch)")


def hard_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy with integer labels (temperature 1).

    A label outside ``[0, classes)`` (which :func:`check_labels` reports when the
    labels are concrete) gives NaN, never another class's loss.
    """
    check_labels(logits, labels)
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    y = jnp.asarray(labels).astype(jnp.int32)
    ok = (y >= 0) & (y < logp.shape[-1])
    picked = jnp.take_along_axis(logp, jnp.clip(y, 0, logp.shape[-1] - 1)[:, None], axis=-1)
    return -jnp.mean(jnp.where(ok[:, None], picked, jnp.nan))


def kd_loss(student_logits: jax.Array, teacher_logits: jax.Array, labels: jax.Array,
            temperature, alpha) -> jax.Array:
    """Hinton's distillation objective: ``α·T²·KL(p_T ‖ q_T) + (1 − α)·CE(y, q_1)``.

    ``alpha = 1`` trains on soft targets only; ``alpha = 0`` is plain training.

    Example:
        >>> import jax.numpy as jnp
        >>> s = jnp.array([[0.0, 0.0]]); t = jnp.array([[0.0, 2.0]]); y = jnp.array([1])
        >>> round(float(kd_loss(s, t, y, 1.0, 0.0)), 4)  # plain cross-entropy: log 2
        0.6931
    """
    check_alpha(alpha)
    a = jnp.asarray(alpha, jnp.float32)
    soft = soft_target_kl(student_logits, teacher_logits, temperature)
    return a * soft + (1.0 - a) * hard_cross_entropy(student_logits, labels)


def logit_mse(student_logits: jax.Array, teacher_logits: jax.Array) -> jax.Array:
    """Mean squared difference of the logits (Ba & Caruana 2014), averaged over
    batch and classes.

    Example:
        >>> import jax.numpy as jnp
        >>> float(logit_mse(jnp.array([[1.0, 3.0]]), jnp.array([[0.0, 1.0]])))
        2.5
    """
    check_logits(student_logits, teacher_logits)
    t = jax.lax.stop_gradient(teacher_logits.astype(jnp.float32))
    return jnp.mean(jnp.square(student_logits.astype(jnp.float32) - t))
