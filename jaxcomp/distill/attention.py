"""Attention transfer (AT): match the spatial attention maps of student and
teacher feature maps — channel-mean of ``|f|^p``, flattened and L2-normalized.

``AT(s, t) = mean((a(s) − a(t))²)`` with ``a(f) = normalize(mean_c |f|^p)``, the
form used in the authors' code; channels may differ, spatial sizes must match.

References:
  Zagoruyko & Komodakis. "Paying More Attention to Attention: Improving the
  Performance of Convolutional Neural Networks via Attention Transfer", ICLR 2017.

Example:
    >>> import jax.numpy as jnp
    >>> from jaxcomp.distill.attention import attention_map, attention_transfer
    >>> f = jnp.ones((2, 4, 4, 3))
    >>> attention_map(f).shape
    (2, 16)
    >>> float(attention_transfer(f, 2.0 * jnp.ones((2, 4, 4, 5))))
    0.0
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxcomp.core.errors import ConfigError

_EPS = 1e-12


def attention_map(feat: jax.Array, p: float = 2.0) -> jax.Array:
    """``normalize(mean_c |f|^p)`` per example: ``(N, H, W, C) -> (N, H·W)``.

    2-D ``(N, D)`` features are treated as ``D`` positions with one channel.
    """
    from jaxcomp.core.errors import check_number

    check_number("attention.p", p, 0.0, None, lo_open=True)
    f = feat.astype(jnp.float32)
    if f.ndim == 2:
        f = f[..., None]
    a = jnp.mean(jnp.abs(f) ** p, axis=-1).reshape((f.shape[0], -1))
    return a / (jnp.linalg.norm(a, axis=-1, keepdims=True) + _EPS)


def attention_transfer(student_feat: jax.Array, teacher_feat: jax.Array,
                       p: float = 2.0) -> jax.Array:
    """Mean squared difference of the normalized attention maps."""
    s_sp, t_sp = jnp.shape(student_feat)[:-1], jnp.shape(teacher_feat)[:-1]
    if jnp.ndim(student_feat) == 2:
        s_sp, t_sp = jnp.shape(student_feat), jnp.shape(teacher_feat)
    if s_sp != t_sp:
        raise ConfigError(f"attention_transfer: student feature shape "
                          f"{tuple(jnp.shape(student_feat))} and teacher feature shape "
                          f"{tuple(jnp.shape(teacher_feat))} differ in batch or spatial size")
    at = jax.lax.stop_gradient(attention_map(teacher_feat, p))
    return jnp.mean(jnp.square(attention_map(student_feat, p) - at))
