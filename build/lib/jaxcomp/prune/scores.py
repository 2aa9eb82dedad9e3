"""Importance scores: which weights matter. Higher score = keep.

* ``magnitude`` — ``|w|`` (Han et al. 2015; Zhu & Gupta 2017);
* ``random`` — uniform noise drawn from an explicit key (the baseline);
* ``snip`` — connection sensitivity ``|g·w|`` on a batch at initialization (Lee et al. 2019);
* ``taylor`` — first-order Taylor saliency ``|g·w|``, averaged during training
  with an exponential moving average (Molchanov et al. 2017/2019);
* ``movement`` — ``−Σ_t w·g``, accumulated while fine-tuning (Sanh et al. 2020).

Example:
    >>> import jax.numpy as jnp
    >>> from jaxcomp.prune.scores import score
    >>> score("snip", jnp.array([1., -2.]), jnp.array([0.5, 0.5])).tolist()
    [0.5, 1.0]
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxcomp.core.errors import ConfigError, check_choice

SCORES = ("magnitude", "random", "snip", "taylor", "movement")
NEEDS_GRADS = ("snip", "taylor", "movement")
ACCUMULATES = ("taylor", "movement")


def score(name: str, w: jax.Array, g: jax.Array | None = None, *, key: Any = None,
          acc: jax.Array | None = None, path: str = "") -> jax.Array:
    """The score of every element of one leaf.

    Args:
      name: one of :data:`SCORES`.
      w: the weights.
      g: their gradient (``snip``, and ``taylor``/``movement`` without an accumulator).
      key: a PRNG key (``random``).
      acc: the running accumulator for ``taylor``/``movement`` (see :func:`accumulate`).
      path: the parameter path, for error messages.
    """
    check_choice("prune.method (score)", name, SCORES)
    w = jnp.asarray(w, jnp.float32)
    if name == "magnitude":
        return jnp.abs(w)
    if name == "random":
        if key is None:
            raise ConfigError(f"random pruning of {path or 'a leaf'}: needs key= (a PRNG key)")
        return jax.random.uniform(key, w.shape, jnp.float32)
    if acc is not None and name in ACCUMULATES:
        return acc
    if g is None:
        raise ConfigError(f"{name} pruning of {path or 'a leaf'}: needs grads= (the gradient "
                          f"of the loss with respect to the params)")
    g = jnp.asarray(g, jnp.float32)
    if name in ("snip", "taylor"):
        return jnp.abs(g * w)
    return -(w * g)


def accumulate(name: str, acc: jax.Array, w: jax.Array, g: jax.Array,
               decay: float = 0.9) -> jax.Array:
    """One step of a score accumulator: EMA of ``|g·w|`` (taylor) or sum of ``−w·g`` (movement)."""
    w = jnp.asarray(w, jnp.float32)
    g = jnp.asarray(g, jnp.float32)
    if name == "taylor":
        return decay * acc + (1.0 - decay) * jnp.abs(g * w)
    if name == "movement":
        return acc - w * g
    return acc


def snip_scores(loss_fn: Any, params: Any, *args: Any) -> Any:
    """``|∂L/∂w · w|`` for every leaf: SNIP's connection sensitivity on one batch.

    Args:
      loss_fn: ``loss_fn(params, *args) -> scalar``.
      params: the (initial) params.

    Example:
        >>> import jax.numpy as jnp
        >>> s = snip_scores(lambda p, x: jnp.sum(p["w"] * x), {"w": jnp.array([2., -3.])},
        ...                 jnp.array([1., 1.]))
        >>> s["w"].tolist()
        [2.0, 3.0]
    """
    grads = jax.grad(loss_fn)(params, *args)
    return jax.tree.map(lambda g, w: jnp.abs(g * w), grads, params)
