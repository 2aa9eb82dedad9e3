"""Learned step size quantization (LSQ, Esser et al. 2020): the scales are
trainable parameters with the LSQ gradient scaling.

``x̂ = round(clip(x / s, qmin, qmax)) · s`` with a straight-through round; the
step ``s`` receives the LSQ gradient (``-x/s + round(x/s)`` inside the range,
``qmin``/``qmax`` outside) multiplied by ``g = 1 / √(N · qmax)``.

To train the scales, :func:`add_lsq_scales` adds a ``<leaf>_lsq_scale`` leaf
beside each selected kernel (initialized to ``2·mean|w| / √qmax``, per output
channel by default); the optimizer then updates them with the weights, and
:func:`lsq` (a :class:`~jaxcomp.core.Transform`) fake-quantizes each kernel with
its sibling scale. Linen ignores the extra leaves. Without a sibling scale the
transform uses a fixed initial scale kept in its state.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp.quant.lsq import add_lsq_scales, lsq
    >>> params = {"Dense_0": {"kernel": jnp.linspace(-1, 1, 12).reshape(4, 3)}}
    >>> p = add_lsq_scales(params, bits=4)
    >>> sorted(p["Dense_0"])
    ['kernel', 'kernel_lsq_scale']
    >>> t = lsq(bits=4)
    >>> g = jax.grad(lambda p: t.apply(p, t.init(p))["Dense_0"]["kernel"].sum())(p)
    >>> g["Dense_0"]["kernel_lsq_scale"].shape
    (3,)

References:
    Esser et al. 2020, "Learned Step Size Quantization".
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxcomp.core import paths as _paths
from jaxcomp.core.errors import ConfigError
from jaxcomp.core.select import Where
from jaxcomp.core.transform import Transform
from jaxcomp.quant.transform import bits_per_path
from jaxcomp.quant.uniform import check_finite, qrange

SUFFIX = "_lsq_scale"


def _round_ste(v: jax.Array) -> jax.Array:
    return v + jax.lax.stop_gradient(jnp.round(v) - v)


def _grad_scale(s: jax.Array, g: Any) -> jax.Array:
    return s * g + jax.lax.stop_gradient(s - s * g)


def lsq_fake_quant(x: jax.Array, scale: jax.Array, bits: Any, *,
                   signed: bool = True) -> jax.Array:
    """LSQ fake-quant of ``x`` with trainable ``scale`` (broadcastable to ``x``).

    Example:
        >>> import jax.numpy as jnp
        >>> lsq_fake_quant(jnp.array([0.26, -0.9, 5.0]), jnp.array(0.25), 3).tolist()
        [0.25, -0.75, 0.75]
    """
    qmin, qmax = qrange(bits, signed=signed, symmetric=True)
    g = jax.lax.rsqrt(jnp.asarray(x.size, jnp.float32) * qmax)
    s = _grad_scale(scale, g)
    return _round_ste(jnp.clip(x / s, qmin, qmax)) * s


def init_scale(w: jax.Array, bits: Any, per_channel: bool = True) -> jax.Array:
    """``2·mean|w| / √qmax`` (per output channel: shape ``(C,)``; else a scalar)."""
    _, qmax = qrange(bits)
    red = tuple(range(w.ndim - 1)) if per_channel else None
    s = 2.0 * jnp.mean(jnp.abs(w), axis=red) / jnp.sqrt(qmax)
    return jnp.where(s > 0, s, 1e-3).astype(jnp.float32)


def add_lsq_scales(params: Any, bits: Any = 8, *, where: Where = None,
                   per_channel: bool = True) -> dict:
    """A copy of ``params`` (a nested dict) with a trainable scale beside each selected kernel."""
    per = bits_per_path(params, bits, where)
    out: dict = jax.tree.map(lambda a: a, _to_dict(params))
    for p, b in per.items():
        *parents, leaf = p.split("/")
        node = out
        for part in parents:
            node = node[part]
        check_finite(node[leaf], f"weights {p}")
        node[leaf + SUFFIX] = init_scale(node[leaf], b, per_channel)
    return out


def _to_dict(tree: Any) -> Any:
    if hasattr(tree, "items"):
        return {k: _to_dict(v) for k, v in tree.items()}
    return tree


def lsq(bits: Any = 8, *, where: Where = None, per_channel: bool = True) -> Transform:
    """LSQ weight fake-quant; trains the ``*_lsq_scale`` leaves added by :func:`add_lsq_scales`.

    State: ``{"bits": {path: f32}, "scale": {path: fixed fallback scale}}``.
    """

    def _where(params):
        if where is not None:
            return where
        return lambda p, x: (not p.endswith(SUFFIX) and getattr(x, "ndim", 0) >= 2
                             and jnp.issubdtype(x.dtype, jnp.floating))

    def init(params):
        per = bits_per_path(params, bits, _where(params))
        flat = _paths.path_dict(params)
        for p in per:
            if p.endswith(SUFFIX):
                raise ConfigError(f"lsq where: selects a scale leaf {p!r}")
        return {"bits": {p: jnp.asarray(b, jnp.float32) for p, b in per.items()},
                "scale": {p: init_scale(jax.lax.stop_gradient(flat[p]), b, per_channel)
                          for p, b in per.items()}}

    def apply(params, state):
        flat = _paths.path_dict(params)

        def leaf(path, x):
            if path not in state["bits"]:
                return x
            s = flat.get(path + SUFFIX, state["scale"][path])
            if s.ndim == 1:
                s = s.reshape((1,) * (x.ndim - 1) + (-1,))
            return lsq_fake_quant(x, s, state["bits"][path]).astype(x.dtype)

        return _paths.map_with_path(leaf, params)

    def update(params, state, *, step, grads=None, key=None):
        return state

    return Transform(init, apply, update)
