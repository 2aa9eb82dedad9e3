"""The training state: params, optimizer, compression and model state, step, key.

Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> from jaxcomp.train.state import TrainState, create_state
    >>> s = create_state({"w": jnp.ones(2)}, {}, optax.sgd(0.1), key=jax.random.key(0))
    >>> int(s.step)
    0
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxcomp.core.transform import Transform, project


class TrainState(NamedTuple):
    """Everything a train step reads and writes (a pytree; one checkpoint holds it)."""

    step: jax.Array
    params: Any
    opt_state: Any
    comp_state: Any
    model_state: Any
    key: jax.Array


def create_state(params: Any, model_state: Any, tx: optax.GradientTransformation, *,
                 key: jax.Array, transform: Transform | None = None) -> TrainState:
    """Initialize optimizer and compression state for ``params``.

    With a transform that has a ``project`` (pruning: pruned weights set to ``0.0``),
    the state holds the projected params, as its train step expects.
    """
    comp_state = transform.init(params) if transform is not None else ()
    params = project(transform, params, comp_state)
    return TrainState(jnp.zeros((), jnp.int32), params, tx.init(params), comp_state,
                      model_state, key)


def own_copy(tree: Any) -> Any:
    """Fresh buffers for every array leaf of ``tree``.

    The train steps donate their input state, so a loop given a caller's state
    (or a state built around the caller's params) trains on a copy: the
    caller's arrays stay alive and unchanged.

    Example:
        >>> import jax.numpy as jnp
        >>> p = {"w": jnp.ones(2)}
        >>> q = own_copy(p)
        >>> q["w"] is p["w"], bool((q["w"] == p["w"]).all())
        (False, True)
    """
    return jax.tree.map(lambda x: x.copy() if isinstance(x, jax.Array) else x, tree)


def projected(state: TrainState, transform: Transform | None) -> TrainState:
    """``state`` with fresh buffers (:func:`own_copy`) and its params projected by
    ``transform`` (its ``project``: pruning sets pruned weights to ``0.0``).

    The training loops take a caller's state through this. Use it on a state whose
    params were replaced by hand (a rewind) before giving it to a train step yourself.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from jaxcomp.prune import magnitude, pruning_transform
        >>> t = pruning_transform(magnitude(0.5))
        >>> s = create_state({"w": jnp.array([[1., -2.], [3., -4.]])}, {}, optax.sgd(0.1),
        ...                  key=jax.random.key(0), transform=t)
        >>> s = s._replace(comp_state=t.update(s.params, s.comp_state, step=0))
        >>> projected(s, t).params["w"].tolist()
        [[0.0, 0.0], [3.0, -4.0]]
    """
    return reproject(own_copy(state), transform)


def reproject(state: TrainState, transform: Transform | None) -> TrainState:
    """``state`` with its params projected by ``transform`` (no copy of the rest); for a
    state whose comp state or params were just written (a setting applied)."""
    return state._replace(params=project(transform, state.params, state.comp_state))
