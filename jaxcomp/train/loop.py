"""``fit``: the training loop — epochs of jitted steps (or one ``lax.scan`` per
epoch for MLPs), evaluation, checkpoints with resume, divergence detection.

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

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcomp.core.errors import ConfigError
from jaxcomp.core.transform import Transform
from jaxcomp.data.dataset import Dataset, batches, epoch_permutation
from jaxcomp.flax.model import Model
from jaxcomp.train.checkpoint import Checkpointer
from jaxcomp.train.epoch_end import close_epoch, resumed_history
from jaxcomp.train.state import TrainState, create_state, own_copy
from jaxcomp.train.step import (
    LossFn,
    eval_step_fn,
    evaluate,
    make_epoch_scan,
    make_train_step,
    scan_by_default,
    train_step_fn,
)


@dataclasses.dataclass
class FitResult:
    """The final state, per-epoch history, and whether/when training diverged."""

    state: TrainState
    history: list[dict[str, float]]
    diverged: bool = False
    diverged_step: int | None = None
    train_seconds: float = 0.0
    resumed_epochs: int = 0

    @property
    def final(self) -> dict[str, float]:
        return self.history[-1] if self.history else {}


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


def fit(model: Model, ds: Dataset, tx: optax.GradientTransformation, *, epochs: int,
        batch_size: int, seed: int = 0, transform: Transform | None = None,
        loss_fn: LossFn | None = None, state: TrainState | None = None,
        scan: bool | None = None, checkpoint_dir: str | None = None,
        eval_every: int = 1, progress: bool = True,
        on_epoch: Callable[[int, TrainState, dict], None] | None = None,
        extra_batch: Callable[[np.ndarray], dict[str, Any]] | None = None,
        loss_state: Any = None) -> FitResult:
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
      extra_batch: ``indices -> dict`` of extra per-example arrays for the batch
        (e.g. cached teacher logits); disables ``scan``.
      loss_state: a pytree of arrays the loss reads as ``batch["loss_state"]``
        (temperatures, loss weights): a sweep over them reuses one compiled step.

    Returns:
      A :class:`FitResult`; ``diverged`` is set (and training stopped) when the
      loss becomes NaN or infinite.
    """
    if epochs < 0:
        raise ConfigError(f"train.epochs: got {epochs}; must be >= 0")
    if batch_size <= 0 or batch_size > len(ds.x_train):
        raise ConfigError(f"train.batch_size: got {batch_size}; allowed 1..{len(ds.x_train)}")
    if state is None:
        state = init_state(model, ds, tx, seed=seed, transform=transform)
    else:
        state = own_copy(state)  # the steps donate their input; keep the caller's arrays
    if scan is None:
        scan = scan_by_default(state, per_step_extras=extra_batch is not None)
    ckpt = Checkpointer(checkpoint_dir) if checkpoint_dir else None
    start = 0
    history: list[dict[str, float]] = []
    if ckpt is not None:
        restored, last = ckpt.restore_latest(state)
        if restored is not None:
            state, start = restored, last
            history = resumed_history(checkpoint_dir, start)
    steps_per_epoch = len(ds.x_train) // batch_size
    eval_fn = jax.jit(eval_step_fn(model, transform))
    if scan:
        epoch_fn = make_epoch_scan(train_step_fn(model, tx, transform, loss_fn), batch_size)
        x_dev, y_dev = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
    else:
        step_fn = make_train_step(model, tx, transform, loss_fn)
    resumed_records = len(history)
    bar = _progress_bar(progress, epochs - start, model.name)
    t0 = time.perf_counter()
    result = FitResult(state, history)
    if start >= epochs and not history and ckpt is not None:
        # resumed from the final checkpoint with no saved history: evaluate it again
        ev = evaluate(model, state.params, state.model_state, ds.x_test, ds.y_test,
                      transform=transform, comp_state=state.comp_state, step_fn=eval_fn)
        history.append({"epoch": start, "test_accuracy": ev["accuracy"], "test_nll": ev["nll"]})
    try:
        for epoch in range(start, epochs):
            if scan:
                perm = epoch_permutation(len(ds.x_train), seed, epoch)[: steps_per_epoch *
                                                                       batch_size]
                state, m = epoch_fn(state, x_dev, y_dev, jnp.asarray(perm), loss_state)
                loss = float(m["loss"])
                train_acc = float(m["accuracy"])
            else:
                losses, accs = [], []
                order = epoch_permutation(len(ds.x_train), seed, epoch)
                for i in range(steps_per_epoch):
                    idx = order[i * batch_size:(i + 1) * batch_size]
                    batch = {"x": ds.x_train[idx], "y": ds.y_train[idx]}
                    if extra_batch is not None:
                        batch.update(extra_batch(idx))
                    if loss_state is not None:
                        batch["loss_state"] = loss_state
                    state, m = step_fn(state, batch)
                    losses.append(m["loss"])
                    accs.append(m["accuracy"])
                loss = float(jnp.mean(jnp.stack(losses)))
                train_acc = float(jnp.mean(jnp.stack(accs)))
            record = {"epoch": epoch + 1, "train_loss": loss, "train_accuracy": train_acc}
            if not math.isfinite(loss):
                result.diverged = True
                result.diverged_step = int(state.step)
                history.append(record)
                break
            close_epoch(epoch + 1, epochs=epochs, eval_every=eval_every, record=record,
                        state=state, history=history, ckpt=ckpt,
                        checkpoint_dir=checkpoint_dir, on_epoch=on_epoch,
                        evaluate=lambda s: evaluate(
                            model, s.params, s.model_state, ds.x_test, ds.y_test,
                            transform=transform, comp_state=s.comp_state, step_fn=eval_fn))
            if bar is not None:
                bar.advance(record)
    finally:
        if bar is not None:
            bar.close()
        if ckpt is not None:
            ckpt.close()
    result.state = state
    result.train_seconds = time.perf_counter() - t0
    result.resumed_epochs = resumed_records
    return result


class _Bar:
    def __init__(self, total: int, name: str):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        # progress goes to stderr (like the sweep's bar): stdout holds only results
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                 TextColumn("{task.completed}/{task.total} epochs"),
                                 TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                                 TextColumn("{task.fields[info]}"), transient=False,
                                 console=Console(stderr=True))
        self.progress.start()
        self.task = self.progress.add_task(name, total=total, info="")

    def advance(self, record: dict) -> None:
        info = f"loss {record['train_loss']:.4f}"
        if "test_accuracy" in record:
            info += f"  test acc {record['test_accuracy']:.4f}"
        self.progress.update(self.task, advance=1, info=info)

    def close(self) -> None:
        self.progress.stop()


def _progress_bar(enabled: bool, total: int, name: str) -> _Bar | None:
    return _Bar(total, name) if enabled and total > 0 else None


__all__ = ["FitResult", "batches", "fit", "init_state"]
