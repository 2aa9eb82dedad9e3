"""Adapter for Flax NNX modules through ``nnx.split`` / ``nnx.merge``.

The params are the ``nnx.Param`` state (an ``nnx.State``; paths such as
``l1/kernel``); everything else (BatchNorm statistics, rng counts) is the model
state. ``apply`` merges, runs in train or eval mode, and splits again; it also
takes params (and model state) as nested dicts of arrays (``nnx.to_pure_dict``),
and runs the module under :func:`jaxcomp.flax.intercept.nnx_interception`, so
the module-path interception of activation quantization, BatchNorm folding,
integer inference and layer accounting sees NNX models as it sees linen ones.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from flax import nnx
    >>> from jaxcomp.flax.nnx import from_nnx
    >>> model = from_nnx(lambda rngs: nnx.Linear(3, 2, rngs=rngs))
    >>> params, state = model.init(jax.random.key(0), jnp.ones((1, 3)))
    >>> out, _ = model.apply(params, state, jnp.ones((4, 3)))
    >>> out.shape
    (4, 2)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from flax import nnx

from jaxcomp.flax.intercept import nnx_interception
from jaxcomp.flax.model import Model


def split_params(module: nnx.Module):
    """``(graphdef, params, rest)`` — params are the ``nnx.Param`` variables."""
    return nnx.split(module, nnx.Param, ...)


def from_nnx(make: Callable[[nnx.Rngs], nnx.Module], name: str | None = None) -> Model:
    """Wrap an NNX module constructor ``make(rngs) -> module``.

    The module is built inside ``init`` from the given key so the same key
    gives the same params, as with linen.
    """
    holder: dict[str, Any] = {}

    def init(key: jax.Array, x: Any):
        del x  # NNX modules are built eagerly from their constructor arguments
        module = make(nnx.Rngs(params=key, dropout=key))
        graphdef, params, rest = split_params(module)
        holder["graphdef"] = graphdef
        holder["name"] = type(module).__name__
        return params, rest

    def apply(params, model_state, x, *, train: bool = False, rng=None):
        if "graphdef" not in holder:
            raise RuntimeError("call init() before apply() on an NNX model")
        module = nnx.merge(holder["graphdef"], params, model_state, copy=True)
        if train:
            module.train()
        else:
            module.eval()
        with nnx_interception(module):  # open jaxcomp.flax.intercept contexts see NNX calls
            if rng is not None and _takes_rngs(module):
                out = module(x, rngs=nnx.Rngs(dropout=rng))
            else:
                out = module(x)
        _, _, new_state = split_params(module)
        return out, new_state

    return Model(init, apply, name or "nnx_model", make)


def _takes_rngs(module: nnx.Module) -> bool:
    import inspect

    try:
        return "rngs" in inspect.signature(module.__call__).parameters
    except (TypeError, ValueError):
        return False
