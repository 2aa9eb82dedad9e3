"""The training engine's epoch loop, written once for every way jaxcomp trains.

:func:`run` trains a state (one setting, or S stacked settings) for some epochs
with a :class:`~jaxcomp.engine.programs.Programs`: it shuffles (one order per
seed), feeds the epoch program (device-resident data, or batches cut per epoch
and split over a mesh), or steps one batch at a time where extras come from
Python; then ends each epoch the same way (divergence check, evaluation when
due, history, orbax checkpoint, progress, the caller's callback). ``fit``,
``fit_data_parallel``, ``fit_stacked``, the sweep runner and the pruning
recipes are thin calls into it.

Example:
    >>> import numpy as np, optax
    >>> from jaxcomp.data import synthetic
    >>> from jaxcomp.engine import Programs, run
    >>> from jaxcomp.models import get_model
    >>> from jaxcomp.sweep.vectorized import stack
    >>> from jaxcomp.train import init_state
    >>> ds = synthetic(num_train=128, num_test=64)
    >>> model = get_model("mlp", input_shape=ds.input_shape, num_classes=4, features=(8,))
    >>> tx = optax.sgd(0.1)
    >>> progs = Programs(model, tx, batch_size=32, stacked=True)
    >>> state = stack([init_state(model, ds, tx, seed=s) for s in (0, 1, 2)])
    >>> r = run(progs, state, ds, epochs=2, seeds=[0, 1, 2])
    >>> r.history[-1]["test_accuracy"].shape, progs.compiles
    ((3,), 1)
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcomp.core.errors import ConfigError
from jaxcomp.data.dataset import Dataset, epoch_permutation
from jaxcomp.engine.evaluate import evaluate_state
from jaxcomp.engine.programs import Programs
from jaxcomp.engine.progress import progress_bar
from jaxcomp.train.checkpoint import Checkpointer
from jaxcomp.train.epoch_end import close_epoch, resumed_history
from jaxcomp.train.state import TrainState

OnEpoch = Callable[[int, TrainState, dict], None]


@dataclasses.dataclass
class FitResult:
    """The final state, per-epoch history, and whether/when training diverged.

    For stacked settings each history value is an ``(S,)`` array and
    ``diverged_steps`` holds each setting's first non-finite step (``-1``: none).
    """

    state: TrainState
    history: list[dict[str, Any]]
    diverged: bool = False
    diverged_step: int | None = None
    train_seconds: float = 0.0
    resumed_epochs: int = 0
    diverged_steps: np.ndarray | None = None

    @property
    def final(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}


def check_schedule(ds: Dataset, epochs: Any, batch_size: Any) -> None:
    """``train.epochs`` a non-negative integer, ``train.batch_size`` in ``1..len(train)``."""
    if not _is_int(epochs) or epochs < 0:
        raise ConfigError(f"train.epochs: got {epochs!r}; must be an integer >= 0")
    n = len(ds.x_train)
    if not _is_int(batch_size) or not 0 < batch_size <= n:
        raise ConfigError(f"train.batch_size: got {batch_size!r}; allowed 1..{n}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def check_run_args(*, tx: Any = ..., transform: Any = None, seed: Any = 0,
                   eval_every: Any = 1) -> None:
    """The rest of a training call's arguments: an optax optimizer, a jaxcomp
    Transform (or ``None``), an integer seed, ``eval_every`` an integer >= 1.

    Example:
        >>> import optax
        >>> check_run_args(tx=optax.sgd(0.1), seed=0, eval_every=1)
    """
    if tx is not ... and not (callable(getattr(tx, "init", None))
                               and callable(getattr(tx, "update", None))):
        raise ConfigError(f"tx: got {type(tx).__name__} {tx!r:.60}; expected an optax "
                          "GradientTransformation (e.g. optax.adam(1e-3))")
    if transform is not None and not all(callable(getattr(transform, f, None))
                                         for f in ("init", "apply", "update")):
        raise ConfigError(f"transform: got {type(transform).__name__} {transform!r:.60}; "
                          "expected a jaxcomp Transform (e.g. jaxcomp.prune.magnitude(0.5)) "
                          "or None")
    if not _is_int(seed):
        raise ConfigError(f"seed: got {seed!r}; expected an integer")
    if eval_every is not None and (not _is_int(eval_every) or eval_every < 1):
        raise ConfigError(f"eval_every: got {eval_every!r}; expected an integer >= 1")


def epoch_order(n: int, seeds: int | Sequence[int], epoch: int, length: int) -> np.ndarray:
    """The epoch's example order: ``(length,)`` for one seed (shared by every
    setting), ``(len(seeds), length)`` for one seed per setting; each row is
    :func:`jaxcomp.data.epoch_permutation` of its seed, so it equals ``fit``'s.

    Example:
        >>> epoch_order(10, [0, 1], 0, 8).shape, epoch_order(10, 0, 0, 8).shape
        ((2, 8), (8,))
    """
    if isinstance(seeds, int | np.integer):
        return np.asarray(epoch_permutation(n, int(seeds), epoch)[:length], np.int32)
    return np.stack([epoch_permutation(n, int(s), epoch)[:length] for s in seeds]).astype(
        np.int32)


def run(progs: Programs, state: TrainState, ds: Dataset, *, epochs: int,
        seeds: int | Sequence[int], scan: bool = True, stream: bool = False,
        loss_state: Any = None, cached: dict[str, Any] | None = None,
        extra_batch: Callable[[np.ndarray], dict[str, Any]] | None = None,
        checkpoint_dir: str | None = None, eval_every: int | None = 1,
        eval_batch_size: int = 1000, progress: bool = False, name: str = "",
        on_epoch: OnEpoch | None = None, stop_on_divergence: bool | None = None,
        evaluate: bool = True, start: tuple[int, list[dict[str, Any]]] | None = None,
        ) -> FitResult:
    """Train ``state`` for ``epochs`` epochs with ``progs``; see the module docstring.

    Args:
      progs: the compiled programs (``progs.stacked``: the state has a settings axis).
      state: the state to train; its buffers are donated (pass a copy to keep yours).
      ds: the dataset.
      epochs: train until this many epochs are done (a resumed run continues).
      seeds: the data-order seed: one int (every setting sees the same batches) or
        one per stacked setting.
      scan: one ``lax.scan`` per epoch (else one jitted call per step; unstacked only).
      stream: cut each epoch's batches on the host and split them over the mesh's
        ``data`` axis (each process loads only its rows); else the data sit on the
        device(s) whole and the program gathers each batch.
      loss_state: numbers the loss reads as ``batch["loss_state"]`` (a leading
        settings axis when stacked).
      cached: per-training-example arrays gathered into every batch under their keys.
      extra_batch: ``indices -> dict`` of per-example extras built in Python
        (per-step only).
      checkpoint_dir: save every epoch (orbax) and resume from the newest there.
      eval_every: evaluate every this many epochs and at the end; ``None``: only
        at the end.
      eval_batch_size: examples per evaluation call.
      progress: show a progress bar named ``name`` (stderr).
      on_epoch: ``(epoch, state, record)`` after each epoch.
      stop_on_divergence: stop when the loss turns non-finite (default: unstacked
        runs stop; a stacked setting that diverges keeps going and is flagged in
        ``diverged_steps`` while the others train on).
      evaluate: evaluate on the test split at all (``False``: training metrics only).
      start: ``(epochs_done, history)`` when the caller restored ``state`` itself
        (the data orders continue from that epoch, so the result equals an
        uninterrupted run's).
    """
    check_schedule(ds, epochs, progs.batch_size)
    check_run_args(eval_every=eval_every)
    mesh = progs.mesh
    stacked = progs.stacked
    if not scan and stacked:
        raise ConfigError("engine: per-step training (scan=False) needs an unstacked state")
    if extra_batch is not None and (scan or mesh is not None):
        raise ConfigError("extra_batch (per-example extras built in Python) needs the "
                          "per-step loop on one device; give the arrays as `cached` instead")
    if stop_on_divergence is None:
        stop_on_divergence = not stacked
    n = len(ds.x_train)
    steps = n // progs.batch_size
    ckpt = Checkpointer(checkpoint_dir, gather=mesh is not None) if checkpoint_dir else None
    start, history = (0, []) if start is None else (int(start[0]), list(start[1]))
    fresh = start == 0
    if ckpt is not None:
        restored, last = ckpt.restore_latest(state)
        if restored is not None:
            state, start, fresh = restored, last, False
            history = resumed_history(checkpoint_dir, start)
    state, loss_state = _place(progs, state, loss_state, fresh)
    feed = _Feed(progs, ds, cached, stream)
    resumed = len(history)
    result = FitResult(state, history)
    n_set = int(np.shape(jax.tree.leaves(state)[0])[0]) if stacked else 0
    diverged = _initial_divergence(history, n_set, steps)
    due = eval_every if eval_every is not None else max(epochs, 1)

    def test_metrics(s):
        return evaluate_state(progs.eval, s, ds.x_test, ds.y_test,
                              batch_size=eval_batch_size, mesh=mesh)

    if evaluate and start >= epochs and not history and ckpt is not None:
        # resumed from the final checkpoint with no saved history: evaluate it again
        ev = test_metrics(state)
        history.append({"epoch": start, "test_accuracy": ev["accuracy"], "test_nll": ev["nll"]})
    bar = progress_bar(progress, epochs - start, name)
    t0 = time.perf_counter()
    try:
        for epoch in range(start, epochs):
            order = epoch_order(n, seeds, epoch, steps * progs.batch_size)
            if scan:
                state, m = progs.epoch(state, *feed.epoch(order), loss_state)
                loss = _host(m["loss"])
                acc = _host(m["accuracy"]) if "accuracy" in m else np.full_like(loss, np.nan)
            else:
                state, loss, acc = _step_epoch(progs, state, feed, order, loss_state,
                                               extra_batch)
            record: dict[str, Any] = {"epoch": epoch + 1, "train_loss": loss,
                                      "train_accuracy": acc}
            bad = ~np.isfinite(np.asarray(loss))
            if stacked:
                diverged[bad & (diverged < 0)] = (epoch + 1) * steps
            elif bool(bad) and stop_on_divergence:
                result.diverged = True
                result.diverged_step = int(_host(state.step))
                history.append(record)
                break
            close_epoch(epoch + 1, epochs=epochs, eval_every=due, record=record, state=state,
                        history=history, ckpt=ckpt, checkpoint_dir=checkpoint_dir,
                        writer=jax.process_index() == 0, on_epoch=on_epoch,
                        evaluate=test_metrics if evaluate else None)
            if bar is not None:
                bar.advance(record)
    finally:
        if bar is not None:
            bar.close()
        if ckpt is not None:
            ckpt.close()
    result.state = state
    result.train_seconds = time.perf_counter() - t0
    result.resumed_epochs = resumed
    if stacked:
        result.diverged_steps = diverged
        result.diverged = bool((diverged >= 0).any())
    return result


def _host(v: Any) -> Any:
    """A metric on the host: a float for one run, a float64 array for stacked ones."""
    from jaxcomp.distributed.sharding import to_host

    out = to_host(v).astype(np.float64)
    return float(out) if out.ndim == 0 else out


def _initial_divergence(history: list[dict], n_set: int, steps: int) -> np.ndarray:
    """Each stacked setting's first non-finite step in the (resumed) history, or -1."""
    diverged = np.full(n_set, -1, np.int64)
    for r in history:
        if "train_loss" in r:
            bad = ~np.isfinite(np.asarray(r["train_loss"], np.float64))
            diverged[bad & (diverged < 0)] = r["epoch"] * steps
    return diverged


def _place(progs: Programs, state: Any, loss_state: Any, fresh: bool) -> tuple[Any, Any]:
    """Put the state and loss state on the mesh (settings over ``sweep``); a fresh
    stacked run first notes which leaves its settings share."""
    mesh = progs.mesh
    if mesh is None:
        if progs.stacked and fresh:
            progs.note_shared(state)
        return state, loss_state
    from jaxcomp.distributed.sharding import put_global, replicated, stacked_shardings

    if progs.stacked and (fresh or progs.shared is None):
        progs.note_shared(state)  # before it is sharded (a resumed run keeps its program)
    state = put_global(state, progs.sharding_of(state))
    if loss_state is not None:
        loss_state = put_global(loss_state, stacked_shardings(mesh, loss_state)
                                if progs.stacked else replicated(mesh))
    return state, loss_state


class _Feed:
    """Where each epoch's batches come from: whole arrays on the device(s), indexed
    by the program, or per-epoch batches cut on the host and split over ``data``."""

    def __init__(self, progs: Programs, ds: Dataset, cached: dict[str, Any] | None,
                 stream: bool):
        self.mesh, self.ds, self.stream = progs.mesh, ds, stream
        self.batch_size = progs.batch_size
        self.cached = dict(cached or {})
        n = len(ds.x_train)
        for k, v in self.cached.items():
            if len(v) != n:
                raise ConfigError(f"cached array {k!r}: has {len(v)} rows but the training "
                                  f"set has {n} examples")
        if stream and (self.mesh is None or self.cached):
            raise ConfigError("engine: stream=True needs a mesh and no cached arrays")
        self._resident: dict[str, Any] | None = None
        self.order_sharding = None
        if self.mesh is not None and progs.stacked:
            from jax.sharding import NamedSharding
            from jax.sharding import PartitionSpec as P

            self.order_sharding = NamedSharding(self.mesh, P("sweep"))

    def resident(self) -> dict[str, Any]:
        if self._resident is None:
            data = {"x": self.ds.x_train, "y": self.ds.y_train, **self.cached}
            if self.mesh is None:
                self._resident = {k: jnp.asarray(v) for k, v in data.items()}
            else:
                from jaxcomp.distributed.sharding import put_global, replicated

                self._resident = {k: put_global(np.asarray(v), replicated(self.mesh))
                                  for k, v in data.items()}
        return self._resident

    def epoch(self, order: np.ndarray) -> tuple[dict[str, Any], Any]:
        """``(data, order)`` arguments of the epoch program."""
        if self.stream:
            return self._streamed(order), None
        if self.mesh is None:
            return self.resident(), jnp.asarray(order)
        from jaxcomp.distributed.sharding import put_global, replicated

        sh = self.order_sharding if order.ndim == 2 else replicated(self.mesh)
        return self.resident(), put_global(order, sh)

    def _streamed(self, order: np.ndarray) -> dict[str, Any]:
        from jaxcomp.distributed.feed import epoch_arrays

        if order.ndim != 1:
            raise ConfigError("engine: streamed batches need one data order for all settings")
        xs, ys = epoch_arrays(self.mesh, self.ds.x_train, self.ds.y_train,
                              order.reshape(-1, self.batch_size))
        return {"x": xs, "y": ys}


def _step_epoch(progs: Programs, state: Any, feed: _Feed, order: np.ndarray,
                loss_state: Any, extra_batch: Callable | None) -> tuple[Any, float, float]:
    """One epoch of jitted single steps (models where a scanned epoch is slower, or
    extras built in Python)."""
    bs = progs.batch_size
    losses, accs = [], []
    for i in range(len(order) // bs):
        idx = order[i * bs:(i + 1) * bs]
        if feed.mesh is not None:
            from jaxcomp.distributed.feed import batch_rows

            batch = {k: batch_rows(feed.mesh, v, idx) for k, v in
                     {"x": feed.ds.x_train, "y": feed.ds.y_train, **feed.cached}.items()}
        else:
            batch = {"x": feed.ds.x_train[idx], "y": feed.ds.y_train[idx],
                     **{k: np.asarray(v)[idx] for k, v in feed.cached.items()}}
        if extra_batch is not None:
            batch.update(extra_batch(idx))
        if loss_state is not None:
            batch["loss_state"] = loss_state
        state, m = progs.step(state, batch)
        losses.append(m["loss"])
        accs.append(m.get("accuracy", jnp.nan))
    if feed.mesh is None:
        return state, float(jnp.mean(jnp.stack(losses))), float(jnp.mean(jnp.stack(accs)))
    from jaxcomp.distributed.sharding import to_host

    return (state, float(np.mean([to_host(v) for v in losses])),
            float(np.mean([to_host(v) for v in accs])))


__all__ = ["FitResult", "check_run_args", "check_schedule", "epoch_order", "run"]
