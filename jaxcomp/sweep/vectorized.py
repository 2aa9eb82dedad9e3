"""Many training runs as one compiled program: ``jax.vmap`` over a leading
*settings* axis of stacked :class:`~jaxcomp.train.TrainState` s — the sweep's
view of the engine (:mod:`jaxcomp.engine`), with one data order per setting.

Settings that differ only in numbers held as arrays (the seed through the
params, key and data order; sparsity targets, temperatures and loss weights
through the compression state and ``loss_state``) share one program: a whole
epoch is one ``lax.scan`` of the ordinary train step, vmapped over settings.
Each setting reads the shared device-resident data through its own
permutation, so its data order is exactly the one ``fit`` would use.

With a device ``mesh`` (:func:`jaxcomp.distributed.make_mesh`) the stacked
settings axis is split over the mesh's ``sweep`` axis and every batch over its
``data`` axis (XLA all-reduces each setting's gradients over ``data``); the
program is the same on one process or many, and the results match the
one-device program within float tolerance (only sums are reordered).

Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> from jaxcomp.data import synthetic
    >>> from jaxcomp.models import get_model
    >>> from jaxcomp.train import init_state
    >>> ds = synthetic(num_train=64, num_test=32)
    >>> model = get_model("mlp", input_shape=ds.input_shape, num_classes=4, features=(8,))
    >>> tx = optax.sgd(0.1)
    >>> states = [init_state(model, ds, tx, seed=s) for s in (0, 1, 2)]
    >>> prog = VectorizedProgram(model, tx, batch_size=16)
    >>> out = train_stacked(prog, stack(states), ds, seeds=[0, 1, 2], epochs=2)
    >>> out.losses.shape, prog.compiles
    ((2, 3), 1)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import optax
from jax.sharding import Mesh

from jaxcomp.core.transform import Transform
from jaxcomp.data.dataset import Dataset, epoch_permutation
from jaxcomp.distributed.sharding import check_divisible
from jaxcomp.engine.evaluate import evaluate_state
from jaxcomp.engine.loop import run
from jaxcomp.engine.programs import Programs
from jaxcomp.engine.settings import stack, unstack  # noqa: F401  (public here)
from jaxcomp.flax.model import Model
from jaxcomp.train.step import LossFn


def epoch_permutations(n: int, seeds: Sequence[int], epoch: int, length: int) -> np.ndarray:
    """The per-setting data orders of one epoch, ``(len(seeds), length)`` int32,
    each exactly ``fit``'s order for that seed."""
    return np.stack([epoch_permutation(n, int(s), epoch)[:length] for s in seeds]).astype(
        np.int32)


class VectorizedProgram(Programs):
    """The engine's stacked programs for one model/optimizer/transform/loss.

    ``compiles`` counts traces of the epoch program (each trace is one XLA
    compile); ``eval_compiles`` those of the eval program. With a ``mesh``, the
    settings are split over its ``sweep`` axis and each batch over ``data``
    (``batch_size`` must be a multiple of the ``data`` axis size).
    """

    def __init__(self, model: Model, tx: optax.GradientTransformation, *, batch_size: int,
                 transform: Transform | None = None, loss_fn: LossFn | None = None,
                 mesh: Mesh | None = None):
        if mesh is not None:
            check_divisible("train.batch_size", batch_size, mesh, "data")
        super().__init__(model, tx, batch_size=batch_size, transform=transform,
                         loss_fn=loss_fn, mesh=mesh, stacked=True)


@dataclasses.dataclass
class StackedHistory:
    """The per-epoch metrics of the first ``epoch`` epochs of stacked settings:
    ``losses`` / ``accuracies`` ``(epoch, settings)``, ``diverged_step`` ``(settings,)``."""

    epoch: int
    losses: np.ndarray
    accuracies: np.ndarray
    diverged_step: np.ndarray


@dataclasses.dataclass
class StackedResult:
    """What :func:`train_stacked` returns: the stacked final state, per-epoch
    ``losses`` / ``accuracies`` of shape ``(epochs, settings)``, per-setting
    ``diverged_step`` (``-1`` if finite) and final test metrics ``(settings,)``."""

    state: Any
    losses: np.ndarray
    accuracies: np.ndarray
    diverged_step: np.ndarray
    test_accuracy: np.ndarray | None
    test_nll: np.ndarray | None


def evaluate_stacked(prog: VectorizedProgram, state: Any, x: np.ndarray, y: np.ndarray,
                     batch_size: int = 1000) -> dict[str, np.ndarray]:
    """Per-setting test accuracy and mean NLL (``(settings,)`` arrays); one compile.

    With ``prog.mesh``, each batch is split over its ``data`` axis (the last one
    padded with zero-weight rows).
    """
    return evaluate_state(prog.eval, state, x, y, batch_size=batch_size, mesh=prog.mesh)


def _records(h: StackedHistory) -> list[dict[str, Any]]:
    return [{"epoch": e + 1, "train_loss": np.asarray(h.losses[e], np.float64),
             "train_accuracy": np.asarray(h.accuracies[e], np.float64)}
            for e in range(h.epoch)]


def _stacked_history(records: list[dict[str, Any]], n_set: int, diverged: np.ndarray
                     ) -> StackedHistory:
    shape = (len(records), n_set)
    losses = np.reshape([r["train_loss"] for r in records], shape).astype(np.float64)
    accs = np.reshape([r["train_accuracy"] for r in records], shape).astype(np.float64)
    return StackedHistory(len(records), losses, accs, diverged.copy())


def train_stacked(prog: VectorizedProgram, state: Any, ds: Dataset, *, seeds: Sequence[int],
                  epochs: int, loss_states: Any = None,
                  place: Callable[[Any], Any] | None = None,
                  on_epoch: Callable[[int, np.ndarray, np.ndarray], None] | None = None,
                  evaluate: bool = True,
                  extra_arrays: dict[str, Any] | None = None,
                  start: StackedHistory | None = None,
                  on_epoch_state: Callable[[int, Any, StackedHistory], None] | None = None,
                  ) -> StackedResult:
    """Train stacked states for ``epochs`` epochs with per-setting data orders
    (:func:`jaxcomp.engine.run` with one seed per setting).

    Args:
      prog: the :class:`VectorizedProgram`.
      state: stacked ``TrainState`` (leading axis = settings).
      ds: the shared dataset.
      seeds: each setting's seed (its data order is ``fit``'s for that seed).
      epochs: epochs to train.
      loss_states: stacked ``loss_state`` pytree, or ``None``.
      place: called on the stacked state (and loss states) before training (a
        device-placement hook; with ``prog.mesh`` they are split over ``sweep``
        after it).
      on_epoch: ``(epoch, losses, accuracies)`` after each epoch.
      evaluate: evaluate on the test split at the end.
      extra_arrays: per-training-example arrays shared by all settings (e.g. cached
        teacher logits), gathered into each batch under their keys.
      start: resume after ``start.epoch`` epochs (``state`` is the state then, the
        history holds the metrics of the epochs done); the data orders continue
        from that epoch, so the result equals an uninterrupted run's.
      on_epoch_state: ``(epoch, state, history)`` after each epoch, before the next one
        (which donates ``state``'s buffers: copy what must outlive the call).
    """
    n_set = len(seeds)
    if place is not None:
        state = place(state)
        loss_states = place(loss_states) if loss_states is not None else None
    first = 0 if start is None else start.epoch
    records = [] if start is None else _records(start)
    done = list(records)

    def epoch_end(epoch: int, st: Any, record: dict[str, Any]) -> None:
        done.append(record)
        if on_epoch is not None:
            on_epoch(epoch, record["train_loss"], record["train_accuracy"])
        if on_epoch_state is not None:
            steps = len(ds.x_train) // prog.batch_size
            diverged = np.full(n_set, -1, np.int64)
            for r in done:
                bad = ~np.isfinite(np.asarray(r["train_loss"]))
                diverged[bad & (diverged < 0)] = r["epoch"] * steps
            on_epoch_state(epoch, st, _stacked_history(done, n_set, diverged))

    r = run(prog, state, ds, epochs=epochs, seeds=list(seeds), loss_state=loss_states,
            cached=extra_arrays, eval_every=None, evaluate=evaluate and epochs > 0,
            on_epoch=epoch_end, start=(first, records))
    ta = tn = None
    if evaluate and epochs > 0:
        last = r.history[-1] if r.history else {}
        if "test_accuracy" not in last:  # resumed after the last epoch: evaluate now
            ev = evaluate_stacked(prog, r.state, ds.x_test, ds.y_test)
            last = {"test_accuracy": ev["accuracy"], "test_nll": ev["nll"]}
        ta, tn = last["test_accuracy"], last["test_nll"]
    h = _stacked_history([x for x in r.history if "train_loss" in x], n_set, r.diverged_steps)
    return StackedResult(r.state, h.losses, h.accuracies, r.diverged_steps, ta, tn)
