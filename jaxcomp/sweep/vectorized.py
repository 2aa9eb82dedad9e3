"""Many training runs as one compiled program: ``jax.vmap`` over a leading
*settings* axis of stacked :class:`~jaxcomp.train.TrainState` s.

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

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxcomp.core.transform import Transform
from jaxcomp.data.dataset import Dataset, epoch_permutation
from jaxcomp.distributed.sharding import (
    check_divisible,
    constrain,
    put_global,
    replicated,
    shard_stacked,
    stacked_shardings,
    to_host,
)
from jaxcomp.flax.model import Model
from jaxcomp.train.step import LossFn, eval_step_fn, train_step_fn


def stack(trees: Sequence[Any]) -> Any:
    """Stack same-structure pytrees along a new leading axis."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def unstack(tree: Any, n: int) -> list[Any]:
    """The ``n`` pytrees of a stacked pytree."""
    return [jax.tree.map(lambda x, i=i: x[i], tree) for i in range(n)]


def epoch_permutations(n: int, seeds: Sequence[int], epoch: int, length: int) -> np.ndarray:
    """The per-setting data orders of one epoch, ``(len(seeds), length)`` int32,
    each exactly ``fit``'s order for that seed."""
    return np.stack([epoch_permutation(n, int(s), epoch)[:length] for s in seeds]).astype(
        np.int32)


class VectorizedProgram:
    """The vmapped epoch and eval programs for one model/optimizer/transform/loss.

    ``compiles`` counts traces of the epoch program (each trace is one XLA
    compile); ``eval_compiles`` those of the eval program. With a ``mesh``, the
    settings are split over its ``sweep`` axis and each batch over ``data``
    (``batch_size`` must be a multiple of the ``data`` axis size).
    """

    def __init__(self, model: Model, tx: optax.GradientTransformation, *, batch_size: int,
                 transform: Transform | None = None, loss_fn: LossFn | None = None,
                 mesh: Mesh | None = None):
        self.model, self.transform, self.batch_size = model, transform, batch_size
        self.mesh = mesh
        self.compiles = 0
        self.eval_compiles = 0
        step = train_step_fn(model, tx, transform, loss_fn)
        if mesh is not None:
            check_divisible("train.batch_size", batch_size, mesh, "data")
            rows = NamedSharding(mesh, P("data"))  # inside vmap: ("sweep", "data")

        def gather(v, ix):
            out = v[ix]
            return out if mesh is None else jax.lax.with_sharding_constraint(out, rows)

        def one_epoch(state, x, y, perm, loss_state, extra):
            idx = perm.reshape((-1, batch_size))

            def body(s, ix):
                batch = {"x": gather(x, ix), "y": gather(y, ix)}
                if extra:
                    batch.update({k: gather(v, ix) for k, v in extra.items()})
                if loss_state is not None:
                    batch["loss_state"] = loss_state
                return step(s, batch)

            state, metrics = jax.lax.scan(body, state, idx)
            return state, jax.tree.map(jnp.mean, metrics)

        def epoch(state, x, y, perms, loss_states, extra, shared):
            self.compiles += 1  # runs only while tracing
            ls_axis = None if loss_states is None else 0
            leaves, treedef = jax.tree.flatten(state)
            n_set = leaves[0].shape[0] if leaves else 0
            # integer leaves equal across settings (step counters, schedule gates) go in
            # unbatched, so a step-gated `lax.cond` (a mask update every Δt steps) stays a
            # branch under vmap instead of becoming a select that runs both sides each step
            axes = treedef.unflatten([None if sh else 0 for sh in shared])
            state = treedef.unflatten([leaf[0] if sh else leaf
                                       for leaf, sh in zip(leaves, shared, strict=True)])
            state, metrics = jax.vmap(one_epoch, in_axes=(axes, None, None, 0, ls_axis, None),
                                      out_axes=(axes, 0),
                                      spmd_axis_name=None if mesh is None else "sweep")(
                state, x, y, perms, loss_states, extra)
            out = jax.tree.leaves(state)
            state = treedef.unflatten([jnp.broadcast_to(leaf, (n_set, *leaf.shape)) if sh
                                       else leaf for leaf, sh in zip(out, shared, strict=True)])
            if mesh is not None:  # the next epoch gets exactly the shardings it was built for
                state, metrics = constrain((state, metrics),
                                           stacked_shardings(mesh, (state, metrics)))
            return state, metrics

        self._epoch = jax.jit(epoch, donate_argnums=(0,), static_argnums=(6,))
        self._shared: tuple[bool, ...] | None = None
        ev = eval_step_fn(model, transform)

        def evaluate(params, comp_state, model_state, x, y, w):
            self.eval_compiles += 1
            return jax.vmap(ev, in_axes=(0, 0, 0, None, None, None),
                            spmd_axis_name=None if mesh is None else "sweep")(
                params, comp_state, model_state, x, y, w)

        self.eval = jax.jit(evaluate)

    @property
    def shared(self) -> tuple[bool, ...] | None:
        """Per state leaf, whether it goes into the epoch program unbatched (``None``
        until the first epoch or :meth:`note_shared`); a resumed group sets the tuple
        it trained with, so it runs the same compiled program."""
        return self._shared

    @shared.setter
    def shared(self, value: tuple[bool, ...] | None) -> None:
        self._shared = None if value is None else tuple(bool(v) for v in value)

    def note_shared(self, state: Any) -> None:
        """Find the leaves equal in every setting of ``state`` (before it is sharded)."""
        self._shared = _shared_leaves(state)

    def epoch(self, state, x, y, perms, loss_states, extra):
        """One epoch of every stacked setting: ``(state, metrics)``, metrics ``(settings,)``."""
        if self._shared is None or len(self._shared) != len(jax.tree.leaves(state)):
            self._shared = _shared_leaves(state)
        if any(self._shared):
            try:
                return self._epoch(state, x, y, perms, loss_states, extra, self._shared)
            except ValueError as e:  # an "equal" counter that a setting's step changes
                if "out_axes" not in str(e):
                    raise
                self._shared = (False,) * len(self._shared)
        return self._epoch(state, x, y, perms, loss_states, extra, self._shared)


def _shared_leaves(state: Any, max_size: int = 64) -> tuple[bool, ...]:
    """Per leaf of a stacked state: a small integer array equal in every setting."""
    out = []
    for leaf in jax.tree.leaves(state):
        ok = (hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.integer)
              and np.ndim(leaf) >= 1 and np.size(leaf) <= max_size * max(np.shape(leaf)[0], 1))
        if ok:
            host = to_host(leaf)  # every process calls this in the same order (SPMD)
            ok = bool(np.all(host == host[:1]))
        out.append(ok)
    return tuple(out)


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
    if prog.mesh is not None:
        from jaxcomp.distributed.vectorized import evaluate_stacked as on_mesh

        return on_mesh(prog.model, state, x, y, mesh=prog.mesh, batch_size=batch_size,
                       step_fn=prog.eval)
    n = len(x)
    bs = min(batch_size, n)
    tot = None
    for i in range(0, n, bs):
        xb, yb = np.asarray(x[i:i + bs]), np.asarray(y[i:i + bs])
        w = np.ones(len(xb), np.float32)
        if len(xb) < bs:
            pad = bs - len(xb)
            xb = np.concatenate([xb, np.zeros((pad, *xb.shape[1:]), xb.dtype)])
            yb = np.concatenate([yb, np.zeros(pad, yb.dtype)])
            w = np.concatenate([w, np.zeros(pad, np.float32)])
        out = prog.eval(state.params, state.comp_state, state.model_state, xb, yb, w)
        out = {k: np.asarray(v, np.float64) for k, v in out.items()}
        tot = out if tot is None else {k: tot[k] + out[k] for k in tot}
    return {"accuracy": tot["correct"] / tot["count"], "nll": tot["nll"] / tot["count"]}


def train_stacked(prog: VectorizedProgram, state: Any, ds: Dataset, *, seeds: Sequence[int],
                  epochs: int, loss_states: Any = None,
                  place: Callable[[Any], Any] | None = None,
                  on_epoch: Callable[[int, np.ndarray, np.ndarray], None] | None = None,
                  evaluate: bool = True,
                  extra_arrays: dict[str, Any] | None = None,
                  start: StackedHistory | None = None,
                  on_epoch_state: Callable[[int, Any, StackedHistory], None] | None = None,
                  ) -> StackedResult:
    """Train stacked states for ``epochs`` epochs with per-setting data orders.

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
    steps = len(ds.x_train) // prog.batch_size
    mesh = prog.mesh
    if place is not None:
        state = place(state)
        loss_states = place(loss_states) if loss_states is not None else None
    put = put_perms = jnp.asarray
    if mesh is not None:  # settings over `sweep` (shard_stacked checks the multiple);
        if start is None or prog.shared is None:  # the shared data whole on every device
            prog.note_shared(state)  # (a resumed group keeps the program it trained with)
        state = shard_stacked(state, mesh)
        loss_states = shard_stacked(loss_states, mesh) if loss_states is not None else None

        def put(v):
            return put_global(np.asarray(v), replicated(mesh))

        def put_perms(v):
            return shard_stacked(v, mesh)
    x_dev, y_dev = put(ds.x_train), put(ds.y_train)
    extra = {k: put(v) for k, v in (extra_arrays or {}).items()}
    first = 0 if start is None else start.epoch
    losses = [] if start is None else list(np.asarray(start.losses, np.float64)[:first])
    accs = [] if start is None else list(np.asarray(start.accuracies, np.float64)[:first])
    diverged = (np.full(n_set, -1, np.int64) if start is None
                else np.asarray(start.diverged_step, np.int64).copy())
    for epoch in range(first, epochs):
        perms = epoch_permutations(len(ds.x_train), seeds, epoch, steps * prog.batch_size)
        state, m = prog.epoch(state, x_dev, y_dev, put_perms(perms), loss_states, extra)
        loss = to_host(m["loss"]).astype(np.float64)
        acc = (to_host(m["accuracy"]).astype(np.float64) if "accuracy" in m
               else np.full(n_set, np.nan))
        losses.append(loss)
        accs.append(acc)
        newly = (~np.isfinite(loss)) & (diverged < 0)
        diverged[newly] = (epoch + 1) * steps
        if on_epoch is not None:
            on_epoch(epoch + 1, loss, acc)
        if on_epoch_state is not None:
            on_epoch_state(epoch + 1, state, StackedHistory(epoch + 1, np.stack(losses),
                                                            np.stack(accs), diverged.copy()))
    ta = tn = None
    if evaluate and epochs > 0:
        ev = evaluate_stacked(prog, state, ds.x_test, ds.y_test)
        ta, tn = ev["accuracy"], ev["nll"]
    shape = (len(losses), n_set)
    return StackedResult(state, np.reshape(losses, shape), np.reshape(accs, shape), diverged,
                         ta, tn)
