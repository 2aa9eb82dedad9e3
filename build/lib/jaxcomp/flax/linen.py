"""Adapter for Flax linen modules: ``variables["params"]`` plus other collections.

Example:
    >>> import jax, jax.numpy as jnp
    >>> import flax.linen as nn
    >>> from jaxcomp.flax.linen import from_linen
    >>> m = from_linen(nn.Dense(2))
    >>> params, state = m.init(jax.random.key(0), jnp.ones((1, 3)))
    >>> sorted(params)
    ['bias', 'kernel']
"""

from __future__ import annotations

import inspect
from typing import Any

import flax.linen as nn
import jax

from jaxcomp.flax.model import Model


def _accepts_train(module: nn.Module) -> bool:
    try:
        return "train" in inspect.signature(module.__call__).parameters
    except (TypeError, ValueError):
        return False


def from_linen(module: nn.Module, name: str | None = None) -> Model:
    """Wrap a linen module. A ``train`` keyword is passed if ``__call__`` takes one.

    Non-``params`` collections (``batch_stats``) are the model state; in
    training they are mutable and the updated values are returned. A ``dropout``
    rng is passed when ``rng`` is given.
    """
    takes_train = _accepts_train(module)

    def init(key: jax.Array, x: Any):
        kw = {"train": False} if takes_train else {}
        variables = module.init({"params": key, "dropout": key}, x, **kw)
        variables = dict(variables)
        params = variables.pop("params", {})
        return params, variables

    def apply(params, model_state, x, *, train: bool = False, rng=None):
        variables = {"params": params, **(model_state or {})}
        kw = {"train": train} if takes_train else {}
        rngs = {"dropout": rng} if rng is not None else None
        mutable = [k for k in (model_state or {})] if train else False
        if mutable:
            out, new_state = module.apply(variables, x, rngs=rngs, mutable=mutable, **kw)
            return out, dict(new_state)
        out = module.apply(variables, x, rngs=rngs, **kw)
        return out, model_state

    return Model(init, apply, name or type(module).__name__, module)
