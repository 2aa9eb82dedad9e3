"""Data-parallel ``fit`` over a device mesh: ``jaxcomp.train.fit`` with a ``mesh``.

Each batch is split over the mesh's ``data`` axis; parameters and optimizer
state are replicated (or split over ``model``, see
:func:`~jaxcomp.distributed.sharding.state_shardings`). The step is the same
:func:`jaxcomp.train.train_step_fn`, jitted with these shardings, so XLA inserts
the gradient all-reduce — no ``pmap``. The shuffling, initialization and
metrics follow ``fit`` exactly, so the results match a single-device ``fit``
within float tolerance (only the order of the gradient sums differs).

With several processes each one loads only its own rows of every batch
(``jax.make_array_from_process_local_data``); metrics are replicated scalars,
so every process sees the same history.

Example:
    >>> import optax
    >>> from jaxcomp.data import synthetic
    >>> from jaxcomp.distributed import make_mesh
    >>> from jaxcomp.distributed.data_parallel import fit_data_parallel
    >>> from jaxcomp.models import get_model
    >>> ds = synthetic(num_train=256, num_test=128)
    >>> model = get_model("mlp", input_shape=ds.input_shape, num_classes=4, features=(32,))
    >>> r = fit_data_parallel(model, ds, optax.adam(1e-2), mesh=make_mesh(), epochs=2,
    ...                       batch_size=32)
    >>> r.history[-1]["test_accuracy"] > 0.5
    True
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import optax
from jax.sharding import Mesh

from jaxcomp.core.errors import ConfigError
from jaxcomp.core.transform import Transform
from jaxcomp.data.dataset import Dataset
from jaxcomp.distributed.memo import memo
from jaxcomp.distributed.mesh import make_mesh
from jaxcomp.distributed.sharding import (
    MIN_SHARD_SIZE,
    check_divisible,
    put_global,
    replicated,
    state_shardings,
)
from jaxcomp.engine.loop import FitResult, check_run_args, check_schedule, run
from jaxcomp.engine.mesh import evaluate_on_mesh, mesh_programs
from jaxcomp.flax.model import Model
from jaxcomp.train.loop import init_state
from jaxcomp.train.state import TrainState, projected
from jaxcomp.train.step import LossFn, scan_by_default


def sharded_init(model: Model, ds: Dataset, tx: optax.GradientTransformation, mesh: Mesh, *,
                 seed: int, transform: Transform | None = None,
                 shard_min_size: int = MIN_SHARD_SIZE) -> TrainState:
    """``init_state`` computed under jit straight into its mesh shardings (no host copy)."""
    sample = np.asarray(ds.x_train[:1])
    init = _init_program(model, tx, transform, mesh, shard_min_size, sample.shape, sample.dtype)
    return init(*put_global((np.int32(seed), sample), replicated(mesh)))


@memo
def _init_program(model, tx, transform, mesh, min_size, shape, dtype):
    def init(seed, x):
        return init_state(model, types.SimpleNamespace(x_train=x), tx, seed=seed,
                          transform=transform)

    abstract = jax.eval_shape(init, jax.ShapeDtypeStruct((), np.int32),
                              jax.ShapeDtypeStruct(shape, dtype))
    rep = replicated(mesh)
    return jax.jit(init, in_shardings=(rep, rep),
                   out_shardings=state_shardings(mesh, abstract, min_size=min_size))


def evaluate_sharded(model: Model, state: TrainState, x: np.ndarray, y: np.ndarray, *,
                     mesh: Mesh, transform: Transform | None = None, batch_size: int = 1000,
                     ) -> dict[str, float]:
    """Accuracy and mean NLL with each evaluation batch split over ``data``
    (see :func:`jaxcomp.engine.mesh.evaluate_on_mesh`)."""
    return evaluate_on_mesh(model, state, x, y, mesh=mesh, transform=transform,
                            batch_size=batch_size)


def fit_data_parallel(model: Model, ds: Dataset, tx: optax.GradientTransformation, *,
                      epochs: int, batch_size: int, mesh: Mesh | None = None, seed: int = 0,
                      transform: Transform | None = None, loss_fn: LossFn | None = None,
                      state: TrainState | None = None, scan: bool | None = None,
                      checkpoint_dir: str | None = None, eval_every: int = 1,
                      eval_batch_size: int = 1000, progress: bool = False,
                      on_epoch: Callable[[int, TrainState, dict], None] | None = None,
                      extra_batch: Callable | None = None, loss_state: Any = None,
                      cached: dict[str, Any] | None = None,
                      shard_min_size: int = MIN_SHARD_SIZE) -> FitResult:
    """Train like :func:`jaxcomp.train.fit`, with batches split over ``mesh``'s ``data`` axis.

    Args:
      model, ds, tx, epochs, batch_size, seed, transform, loss_fn, state, eval_every,
        on_epoch, loss_state: as in :func:`jaxcomp.train.fit`.
      mesh: the device mesh (default: every device on ``data``).
      scan: one ``lax.scan`` per epoch over the epoch's batches (default: for
        models without a model state); otherwise one jitted call per step.
      eval_batch_size: examples per evaluation call (rounded up to the data axis).
      checkpoint_dir: save every epoch (process 0 writes) and resume from the
        newest checkpoint (orbax, see :class:`~jaxcomp.train.checkpoint.Checkpointer`).
      progress: accepted for drop-in compatibility with ``fit``; no bar is shown.
      cached: per-training-example arrays (e.g. a teacher's logits) gathered into
        every batch under their keys; the training data then sit whole on every
        device instead of being streamed per epoch.
      extra_batch: not supported (per-example extras would need sharding too);
        must be ``None``.
      shard_min_size: with a ``model`` axis > 1, leaves with at least this many
        elements are split over it (see ``state_shardings``).

    Returns:
      A :class:`jaxcomp.train.FitResult` whose state lives on the mesh.

    Raises:
      ConfigError: bad epochs / batch size, or a batch size not divisible by the
        ``data`` axis size.
    """
    mesh = make_mesh() if mesh is None else mesh
    check_schedule(ds, epochs, batch_size)
    check_run_args(tx=tx, transform=transform, seed=seed, eval_every=eval_every)
    check_divisible("train.batch_size", batch_size, mesh, "data")
    if extra_batch is not None:
        raise ConfigError("fit_data_parallel: extra_batch (per-example extras such as cached "
                          "teacher logits) is not supported on a mesh yet; use jaxcomp.train.fit")
    del progress
    if state is None:
        state = sharded_init(model, ds, tx, mesh, seed=seed, transform=transform,
                             shard_min_size=shard_min_size)
    else:
        # the steps donate their input (keep the caller's arrays); params projected
        state = projected(state, transform)
    state_sh = state_shardings(mesh, state, min_size=shard_min_size)
    if scan is None:
        scan = scan_by_default(state)
    progs = mesh_programs(model, tx, batch_size, transform, loss_fn, mesh, state_sh, False)
    return run(progs, state, ds, epochs=epochs, seeds=seed, scan=bool(scan),
               stream=not cached, cached=cached, loss_state=loss_state,
               checkpoint_dir=checkpoint_dir, eval_every=eval_every,
               eval_batch_size=eval_batch_size, on_epoch=on_epoch)


__all__ = ["evaluate_sharded", "fit_data_parallel", "sharded_init"]
