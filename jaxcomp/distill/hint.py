"""FitNets hints: regress a student feature map onto a teacher feature map,
through a learnable projection (dense, or 1×1 convolution on ``NHWC`` maps)
when the widths differ.

References:
  Romero, Ballas, Kahou, Chassang, Gatta, Bengio. "FitNets: Hints for Thin Deep
  Nets", ICLR 2015.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp.distill.hint import hint_loss, init_projection, project
    >>> s, t = jnp.ones((4, 8)), jnp.ones((4, 16))
    >>> proj = init_projection(jax.random.key(0), s.shape, t.shape)
    >>> project(proj, s).shape
    (4, 16)
    >>> float(hint_loss(t, t))
    0.0
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxcomp.core.errors import ConfigError


def hint_loss(student_feat: jax.Array, teacher_feat: jax.Array) -> jax.Array:
    """Mean squared error between (projected) student and teacher features.

    FitNets uses ``½‖u_h − r(v_g)‖²`` summed; we average over all elements so
    the weight does not depend on the feature size. The teacher gets no gradient.
    """
    if jnp.shape(student_feat) != jnp.shape(teacher_feat):
        raise ConfigError(f"hint_loss: student feature shape {tuple(jnp.shape(student_feat))} "
                          f"!= teacher feature shape {tuple(jnp.shape(teacher_feat))}")
    t = jax.lax.stop_gradient(teacher_feat.astype(jnp.float32))
    return jnp.mean(jnp.square(student_feat.astype(jnp.float32) - t))


def needs_projection(student_shape: tuple, teacher_shape: tuple) -> bool:
    """True when only the last (channel/width) axis differs."""
    return tuple(student_shape) != tuple(teacher_shape)


def check_projectable(student_shape: tuple, teacher_shape: tuple, *, student_path: str = "?",
                      teacher_path: str = "?", projection: bool = True) -> None:
    """ConfigError unless the features match, or differ only in width and a
    projection is configured. Both shapes and module paths are named."""
    s, t = tuple(student_shape), tuple(teacher_shape)
    if s == t:
        return
    where = (f"student feature {student_path!r} has shape {s}, teacher feature "
             f"{teacher_path!r} has shape {t}")
    if not projection:
        raise ConfigError(f"distill.features: {where}; they differ and no projection is "
                          "configured (set projection='auto' or pick layers of equal shape)")
    if len(s) != len(t) or s[:-1] != t[:-1] or len(s) not in (2, 4):
        raise ConfigError(f"distill.features: {where}; a projection (dense on (N, D), 1×1 "
                          "conv on (N, H, W, C)) can only change the last axis")


def init_projection(key: jax.Array, student_shape: tuple, teacher_shape: tuple) -> dict[str, Any]:
    """Params of the student→teacher projection: ``{"kernel": (C_s, C_t), "bias": (C_t,)}``.

    A dense layer on ``(N, D)`` features, a 1×1 convolution (the same matmul over
    the channel axis) on ``(N, H, W, C)`` maps; LeCun-normal initialization.
    """
    check_projectable(student_shape, teacher_shape)
    cs, ct = int(student_shape[-1]), int(teacher_shape[-1])
    kernel = jax.random.normal(key, (cs, ct), jnp.float32) / jnp.sqrt(cs)
    return {"kernel": kernel, "bias": jnp.zeros((ct,), jnp.float32)}


def project(proj: dict[str, Any], feat: jax.Array) -> jax.Array:
    """Apply a projection from :func:`init_projection` over the last axis."""
    if not isinstance(proj, dict) or "kernel" not in proj or "bias" not in proj:
        raise ConfigError(f"project: proj got {type(proj).__name__}; expected "
                          "{'kernel', 'bias'} from init_projection")
    cin = jnp.shape(proj["kernel"])[0]
    if jnp.shape(feat)[-1] != cin:
        raise ConfigError(f"project: feat has {jnp.shape(feat)[-1]} channels (shape "
                          f"{tuple(jnp.shape(feat))}) but the projection expects {cin}")
    return jnp.einsum("...c,cd->...d", feat.astype(jnp.float32), proj["kernel"]) + proj["bias"]
