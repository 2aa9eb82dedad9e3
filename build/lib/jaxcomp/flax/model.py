"""A framework-neutral model handle: what the training loop and transforms see.

Linen and NNX models are both wrapped into a :class:`Model`: ``init`` returns
``(params, model_state)`` (``model_state`` holds non-trainable collections such
as BatchNorm statistics, possibly empty) and ``apply`` runs the forward pass
on params the caller chooses — typically ``transform.apply(params, state)``.

Example:
    >>> import jax, jax.numpy as jnp
    >>> import flax.linen as nn
    >>> from jaxcomp.flax import from_linen
    >>> model = from_linen(nn.Dense(3))
    >>> params, model_state = model.init(jax.random.key(0), jnp.ones((1, 4)))
    >>> logits, _ = model.apply(params, model_state, jnp.ones((2, 4)), train=False)
    >>> logits.shape
    (2, 3)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

PyTree = Any


class Model(NamedTuple):
    """``init(key, x) -> (params, model_state)``;
    ``apply(params, model_state, x, *, train, rng=None) -> (outputs, new_model_state)``."""

    init: Callable[..., tuple[PyTree, PyTree]]
    apply: Callable[..., tuple[Any, PyTree]]
    name: str = "model"
    module: Any = None
