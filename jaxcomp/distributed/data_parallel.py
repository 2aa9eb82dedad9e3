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

import math
import time
import types
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxcomp.core.errors import ConfigError
from jaxcomp.core.transform import Transform
from jaxcomp.data.dataset import Dataset, epoch_permutation
from jaxcomp.distributed.checkpoint import HostCheckpointer
from jaxcomp.distributed.feed import batch_arrays, epoch_arrays, eval_batches
from jaxcomp.distributed.memo import memo
from jaxcomp.distributed.mesh import make_mesh
from jaxcomp.distributed.sharding import (
    MIN_SHARD_SIZE,
    check_divisible,
    put_global,
    replicated,
    state_shardings,
    to_host,
)
from jaxcomp.flax.model import Model
from jaxcomp.train.epoch_end import close_epoch, resumed_history
from jaxcomp.train.loop import FitResult, init_state
from jaxcomp.train.state import TrainState, own_copy
from jaxcomp.train.step import LossFn, eval_step_fn, scan_by_default, train_step_fn


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
                     step_fn: Callable | None = None) -> dict[str, float]:
    """Accuracy and mean NLL with each evaluation batch split over ``data``.

    The last batch is padded with zero-weight examples; the batch size is
    rounded up to a multiple of the ``data`` axis.
    """
    fn = step_fn
    if fn is None:
        sh = state_shardings(mesh, state)
        state = put_global(state, sh)
        fn = _eval_fn(model, transform, mesh, sh)
    totals = {"correct": 0.0, "nll": 0.0, "count": 0.0}
    for xb, yb, wb in eval_batches(mesh, x, y, batch_size):
        out = fn(state.params, state.comp_state, state.model_state, xb, yb, wb)
        for k in totals:
            totals[k] += float(to_host(out[k]))
    return {"accuracy": totals["correct"] / totals["count"],
            "nll": totals["nll"] / totals["count"]}


def _eval_fn(model, transform, mesh, sh):
    b = NamedSharding(mesh, P("data"))
    return jax.jit(eval_step_fn(model, transform),
                   in_shardings=(sh.params, sh.comp_state, sh.model_state, b, b, b),
                   out_shardings=replicated(mesh))


def _epoch_fn(step: Callable, state_sh: Any, mesh: Mesh, has_loss_state: bool) -> Callable:
    rep = replicated(mesh)
    data_sh = NamedSharding(mesh, P(None, "data"))

    def epoch(state, xs, ys, loss_state):
        def body(s, xy):
            batch = {"x": xy[0], "y": xy[1]}
            if has_loss_state:
                batch["loss_state"] = loss_state
            s, m = step(s, batch)
            return s, m

        state, metrics = jax.lax.scan(body, state, (xs, ys))
        return state, jax.tree.map(jnp.mean, metrics)

    return jax.jit(epoch, in_shardings=(state_sh, data_sh, data_sh, rep),
                   out_shardings=(state_sh, rep), donate_argnums=(0,))


def _step_fn(step: Callable, state_sh: Any, mesh: Mesh, has_loss_state: bool) -> Callable:
    rep = replicated(mesh)
    b = NamedSharding(mesh, P("data"))

    def one(state, x, y, loss_state):
        batch = {"x": x, "y": y}
        if has_loss_state:
            batch["loss_state"] = loss_state
        return step(state, batch)

    return jax.jit(one, in_shardings=(state_sh, b, b, rep), out_shardings=(state_sh, rep),
                   donate_argnums=(0,))


@memo
def _programs(model, tx, transform, loss_fn, mesh, state_sh, has_ls, scan):
    """The jitted train (epoch or step) and eval programs, reused across calls."""
    step = train_step_fn(model, tx, transform, loss_fn)
    run = (_epoch_fn if scan else _step_fn)(step, state_sh, mesh, has_ls)
    return run, _eval_fn(model, transform, mesh, state_sh)


def fit_data_parallel(model: Model, ds: Dataset, tx: optax.GradientTransformation, *,
                      epochs: int, batch_size: int, mesh: Mesh | None = None, seed: int = 0,
                      transform: Transform | None = None, loss_fn: LossFn | None = None,
                      state: TrainState | None = None, scan: bool | None = None,
                      checkpoint_dir: str | None = None, eval_every: int = 1,
                      eval_batch_size: int = 1000, progress: bool = False,
                      on_epoch: Callable[[int, TrainState, dict], None] | None = None,
                      extra_batch: Callable | None = None, loss_state: Any = None,
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
        newest checkpoint (see :class:`~jaxcomp.distributed.checkpoint.HostCheckpointer`).
      progress: accepted for drop-in compatibility with ``fit``; no bar is shown.
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
    if not isinstance(epochs, int) or epochs < 0:
        raise ConfigError(f"train.epochs: got {epochs!r}; must be an integer >= 0")
    if not isinstance(batch_size, int) or not 0 < batch_size <= len(ds.x_train):
        raise ConfigError(f"train.batch_size: got {batch_size!r}; allowed 1..{len(ds.x_train)}")
    check_divisible("train.batch_size", batch_size, mesh, "data")
    if extra_batch is not None:
        raise ConfigError("fit_data_parallel: extra_batch (per-example extras such as cached "
                          "teacher logits) is not supported on a mesh yet; use jaxcomp.train.fit")
    del progress
    if state is None:
        state = sharded_init(model, ds, tx, mesh, seed=seed, transform=transform,
                             shard_min_size=shard_min_size)
    else:
        state = own_copy(state)  # the steps donate their input; keep the caller's arrays
    state_sh = state_shardings(mesh, state, min_size=shard_min_size)
    ckpt = HostCheckpointer(checkpoint_dir) if checkpoint_dir else None
    start = 0
    if ckpt is not None:
        restored, last = ckpt.restore_latest(state)
        if restored is not None:
            state, start = restored, last
    history = resumed_history(checkpoint_dir, start)
    state = put_global(state, state_sh)
    if scan is None:
        scan = scan_by_default(state)
    has_ls = loss_state is not None
    ls = put_global(loss_state, replicated(mesh)) if has_ls else None
    run, eval_fn = _programs(model, tx, transform, loss_fn, mesh, state_sh, has_ls, bool(scan))
    steps = len(ds.x_train) // batch_size
    result = FitResult(state, history)
    t0 = time.perf_counter()
    try:
        for epoch in range(start, epochs):
            perm = epoch_permutation(len(ds.x_train), seed, epoch)[: steps * batch_size]
            perm = perm.reshape(steps, batch_size)
            if scan:
                xs, ys = epoch_arrays(mesh, ds.x_train, ds.y_train, perm)
                state, m = run(state, xs, ys, ls)
                loss, acc = float(to_host(m["loss"])), float(to_host(m["accuracy"]))
            else:
                losses, accs = [], []
                for i in range(steps):
                    xb, yb = batch_arrays(mesh, ds.x_train, ds.y_train, perm[i])
                    state, m = run(state, xb, yb, ls)
                    losses.append(m["loss"])
                    accs.append(m["accuracy"])
                loss = float(np.mean([to_host(v) for v in losses]))
                acc = float(np.mean([to_host(v) for v in accs]))
            record = {"epoch": epoch + 1, "train_loss": loss, "train_accuracy": acc}
            if not math.isfinite(loss):
                result.diverged = True
                result.diverged_step = int(to_host(state.step))
                history.append(record)
                break
            close_epoch(epoch + 1, epochs=epochs, eval_every=eval_every, record=record,
                        state=state, history=history, ckpt=ckpt,
                        checkpoint_dir=checkpoint_dir, writer=jax.process_index() == 0,
                        on_epoch=on_epoch,
                        evaluate=lambda s: evaluate_sharded(
                            model, s, ds.x_test, ds.y_test, mesh=mesh, transform=transform,
                            batch_size=eval_batch_size, step_fn=eval_fn))
    finally:
        if ckpt is not None:
            ckpt.close()
    result.state = state
    result.train_seconds = time.perf_counter() - t0
    return result


__all__ = ["evaluate_sharded", "fit_data_parallel", "sharded_init"]
