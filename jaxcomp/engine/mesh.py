"""The engine's programs on a device mesh, built once per model/optimizer/mesh/layout,
and evaluation of a (stacked) state there.

Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> from jaxcomp.data import synthetic
    >>> from jaxcomp.distributed import make_mesh
    >>> from jaxcomp.models import get_model
    >>> from jaxcomp.train import init_state
    >>> ds = synthetic(num_train=64, num_test=30)
    >>> model = get_model("mlp", input_shape=ds.input_shape, num_classes=4, features=(8,))
    >>> st = init_state(model, ds, optax.sgd(0.1), seed=0)
    >>> ev = evaluate_on_mesh(model, st, ds.x_test, ds.y_test, mesh=make_mesh())
    >>> 0.0 <= ev["accuracy"] <= 1.0
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np
import optax
from jax.sharding import Mesh

from jaxcomp.core.transform import Transform
from jaxcomp.distributed.memo import memo
from jaxcomp.distributed.sharding import put_global, stacked_shardings, state_shardings
from jaxcomp.engine.evaluate import evaluate_state
from jaxcomp.engine.programs import Programs
from jaxcomp.flax.model import Model
from jaxcomp.train.step import LossFn

_EVAL_ONLY = optax.identity()  # the eval program does not depend on the optimizer


@memo
def mesh_programs(model: Model, tx: optax.GradientTransformation, batch_size: int,
                  transform: Transform | None, loss_fn: LossFn | None, mesh: Mesh,
                  state_sharding: Any, stacked: bool) -> Programs:
    """The engine's programs on ``mesh`` for a state laid out as ``state_sharding``,
    reused across calls (resuming or training the same model again compiles once)."""
    return Programs(model, tx, batch_size=batch_size, transform=transform, loss_fn=loss_fn,
                    mesh=mesh, stacked=stacked, state_sharding=state_sharding)


def evaluate_on_mesh(model: Model, state: Any, x: np.ndarray, y: np.ndarray, *, mesh: Mesh,
                     transform: Transform | None = None, batch_size: int = 1000,
                     stacked: bool = False) -> dict[str, Any]:
    """Accuracy and mean NLL of ``state`` with every evaluation batch split over
    ``data`` (the last one padded with zero-weight rows; the batch size rounded up
    to the ``data`` axis): floats, or ``(S,)`` arrays for a stacked state."""
    sh = (stacked_shardings if stacked else state_shardings)(mesh, state)
    progs = mesh_programs(model, _EVAL_ONLY, 1, transform, None, mesh, sh, stacked)
    return evaluate_state(progs.eval, put_global(state, sh), x, y, batch_size=batch_size,
                          mesh=mesh)


__all__ = ["evaluate_on_mesh", "mesh_programs"]
