"""``fit``: train one model — epochs of jitted steps (or one ``lax.scan`` per
epoch), evaluation, checkpoints with resume, divergence detection.

A thin call into the engine (:func:`jaxcomp.engine.run`): the same epoch body,
eval loop and end-of-epoch routine serve sweeps and data-parallel training.

Example:
    >>> import optax
    >>> from jaxcomp.data import synthetic
    >>> from jaxcomp.models import get_model
    >>> from jaxcomp.train import fit
    >>> ds = synthetic(num_train=256, num_test=128)
    >>> model = get_model("mlp", input_shape=ds.input_shape, num_classes=4, features=(32,))
    >>> result = fit(model, ds, optax.adam(1e-2), epochs=3, batch_size=32, seed=0,
    ...              progress=False)
    >>> result.history[-1]["test_accuracy"] > 0.5
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcomp.core.transform import Transform
from jaxcomp.data.dataset import Dataset, batches
from jaxcomp.distributed.memo import memo
from jaxcomp.engine.loop import FitResult, check_run_args, check_schedule, run
from jaxcomp.engine.programs import Augment, Programs
from jaxcomp.flax.model import Model
from jaxcomp.train.state import TrainState, create_state, projected
from jaxcomp.train.step import LossFn, scan_by_default


def init_state(model: Model, ds: Dataset, tx: optax.GradientTransformation, *, seed: int,
               transform: Transform | None = None, params: Any = None,
               model_state: Any = None) -> TrainState:
    """Initialize params (from ``seed`` unless given) and all the states."""
    key = jax.random.key(seed)
    init_key, run_key = jax.random.split(key)
    if params is None:
        params, ms = model.init(init_key, jnp.asarray(ds.x_train[:1]))
        model_state = ms if model_state is None else model_state
    return create_state(params, model_state if model_state is not None else {}, tx,
                        key=run_key, transform=transform)


@memo
def programs_for(model: Model, tx: optax.GradientTransformation, batch_size: int,
                 transform: Transform | None = None, loss_fn: LossFn | None = None,
                 augment: Augment | None = None) -> Programs:
    """The compiled programs of one unstacked run, reused by later runs of the same
    model, optimizer, transform, loss and batch size (one compile for all of them)."""
    return Programs(model, tx, batch_size=batch_size, transform=transform, loss_fn=loss_fn,
                    augment=augment)


def fit(model: Model, ds: Dataset, tx: optax.GradientTransformation, *, epochs: int,
        batch_size: int, seed: int = 0, transform: Transform | None = None,
        loss_fn: LossFn | None = None, state: TrainState | None = None,
        scan: bool | None = None, checkpoint_dir: str | None = None,
        eval_every: int = 1, progress: bool = True,
        on_epoch: Callable[[int, TrainState, dict], None] | None = None,
        extra_batch: Callable[[np.ndarray], dict[str, Any]] | None = None,
        loss_state: Any = None, cached: dict[str, Any] | None = None,
        augment: Augment | None = None) -> FitResult:
    """Train ``model`` on ``ds`` for ``epochs`` epochs.

    Args:
      model: a :class:`jaxcomp.flax.Model`.
      ds: the dataset (numpy arrays).
      tx: any optax optimizer (or a jaxcomp wrapper around one).
      epochs, batch_size, seed: the schedule; shuffling depends on ``(seed, epoch)`` only.
      transform: an optional compression transform applied in the forward pass.
      loss_fn: ``(logits, batch) -> (loss, aux)``; cross-entropy by default.
      state: start from this state instead of a fresh one (fine-tuning). It is
        copied on entry: the caller's arrays are never donated to the step.
      scan: run each epoch as one ``lax.scan``; ``None`` decides by
        :func:`jaxcomp.train.step.scan_by_default` (dense-only models without a
        model state: faster on CPU).
      checkpoint_dir: save every epoch; resume from the newest checkpoint there.
      eval_every: evaluate on the test split every this many epochs (and at the end).
      progress: show a progress bar.
      on_epoch: callback ``(epoch, state, metrics)``.
      extra_batch: ``indices -> dict`` of extra per-example arrays for the batch,
        built in Python; runs the per-step loop. Prefer ``cached``.
      loss_state: a pytree of arrays the loss reads as ``batch["loss_state"]``
        (temperatures, loss weights): a sweep over them reuses one compiled step.
      cached: per-training-example arrays (e.g. a teacher's logits) kept on the
        device beside ``x`` and ``y`` and gathered into every batch under their keys.
      augment: ``(x, key) -> x`` applied to every training batch.

    Returns:
      A :class:`FitResult`; ``diverged`` is set (and training stopped) when the
      loss becomes NaN or infinite.
    """
    check_schedule(ds, epochs, batch_size)
    check_run_args(tx=tx, transform=transform, seed=seed, eval_every=eval_every)
    if state is None:
        state = init_state(model, ds, tx, seed=seed, transform=transform)
    else:
        # the steps donate their input (keep the caller's arrays); params projected
        state = projected(state, transform)
    if scan is None:
        scan = scan_by_default(state, per_step_extras=extra_batch is not None)
    progs = programs_for(model, tx, batch_size, transform, loss_fn, augment)
    return run(progs, state, ds, epochs=epochs, seeds=seed, scan=bool(scan),
               loss_state=loss_state, cached=cached, extra_batch=extra_batch,
               checkpoint_dir=checkpoint_dir, eval_every=eval_every, progress=progress,
               name=model.name, on_epoch=on_epoch)


__all__ = ["FitResult", "batches", "fit", "init_state", "programs_for"]
