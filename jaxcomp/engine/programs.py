"""The compiled programs of the training engine: one epoch body, one step, one eval.

An epoch is one ``lax.scan`` of :func:`jaxcomp.train.train_step_fn` over the
epoch's batches. Batches come either from device-resident data indexed by the
epoch's shuffled order (``order`` given) or from arrays already cut into
``(steps, batch, ...)`` (``order=None``: a process then loads only its own rows
of every batch). With ``stacked=True`` the same body runs under ``jax.vmap``
over a leading *settings* axis of the state (seeds, learning rates, sparsity
targets, temperatures held as arrays), split over a mesh's ``sweep`` axis; the
batch is split over ``data``. A single run, a data-parallel run and a
vectorized sweep are the same program with a settings axis of size 1 (not
stacked) or S, on no mesh or a mesh.

Example:
    >>> import jax, jax.numpy as jnp, numpy as np, optax
    >>> from jaxcomp.data import synthetic
    >>> from jaxcomp.models import get_model
    >>> from jaxcomp.train import init_state
    >>> ds = synthetic(num_train=64, num_test=32)
    >>> model = get_model("mlp", input_shape=ds.input_shape, num_classes=4, features=(8,))
    >>> progs = Programs(model, optax.sgd(0.1), batch_size=16)
    >>> data = {"x": jnp.asarray(ds.x_train), "y": jnp.asarray(ds.y_train)}
    >>> state = init_state(model, ds, optax.sgd(0.1), seed=0)
    >>> state, m = progs.epoch(state, data, jnp.arange(64), None)
    >>> int(state.step), sorted(m), progs.compiles
    (4, ['accuracy', 'loss'], 1)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxcomp.core.transform import Transform
from jaxcomp.flax.model import Model
from jaxcomp.train.step import LossFn, eval_step_fn, train_step_fn

Augment = Callable[[jax.Array, jax.Array], jax.Array]
Step = Callable[[Any, dict], tuple[Any, dict]]


def with_augment(step: Step, augment: Augment | None) -> Step:
    """``step`` whose batch's ``x`` is first passed through ``augment(x, key)``, the key
    derived from the state's key and step (so every setting and epoch differs)."""
    if augment is None:
        return step

    def augmented(s, batch):
        key = jax.random.fold_in(jax.random.fold_in(s.key, s.step), 7)
        return step(s, {**batch, "x": augment(batch["x"], key)})

    return augmented


def epoch_body(step: Step, batch_size: int, *, rows: NamedSharding | None = None
               ) -> Callable[[Any, dict, Any, Any], tuple[Any, dict]]:
    """The one epoch body: ``(state, data, order, loss_state) -> (state, mean_metrics)``.

    With ``order`` (the epoch's shuffled example indices, a multiple of
    ``batch_size`` long) each batch is ``{k: data[k][idx]}`` (constrained to
    ``rows`` on a mesh); with ``order=None``, ``data`` holds the batches already,
    ``(steps, batch, ...)`` per key. ``loss_state`` reaches the loss as
    ``batch["loss_state"]``.
    """

    def gather(v, ix):
        out = v[ix]
        return out if rows is None else jax.lax.with_sharding_constraint(out, rows)

    def one_epoch(state, data, order, loss_state):
        def body(s, item):
            batch = ({k: gather(v, item) for k, v in data.items()} if order is not None
                     else dict(item))
            if loss_state is not None:
                batch["loss_state"] = loss_state
            return step(s, batch)

        xs = data if order is None else order.reshape((-1, batch_size))
        state, metrics = jax.lax.scan(body, state, xs)
        return state, jax.tree.map(jnp.mean, metrics)

    return one_epoch


def make_epoch_scan(step: Step, batch_size: int) -> Callable:
    """A jitted whole epoch as one ``lax.scan`` over device-resident ``x`` and ``y``.

    ``epoch(state, x, y, perm, loss_state=None) -> (state, mean_metrics)``; ``perm``
    is the epoch's shuffled order (its length a multiple of ``batch_size``). The
    input state is donated.

    Example:
        >>> import jax, jax.numpy as jnp, optax, flax.linen as nn
        >>> from jaxcomp.flax import from_linen
        >>> from jaxcomp.train import create_state, train_step_fn
        >>> model = from_linen(nn.Dense(2)); tx = optax.sgd(0.1)
        >>> p, ms = model.init(jax.random.key(0), jnp.ones((1, 3)))
        >>> s = create_state(p, ms, tx, key=jax.random.key(1))
        >>> epoch = make_epoch_scan(train_step_fn(model, tx), 4)
        >>> s, m = epoch(s, jnp.ones((8, 3)), jnp.zeros(8, jnp.int32), jnp.arange(8))
        >>> int(s.step)
        2
    """
    body = epoch_body(step, batch_size)

    def epoch(state, x, y, perm, loss_state=None):
        return body(state, {"x": x, "y": y}, perm, loss_state)

    return jax.jit(epoch, donate_argnums=(0,))


def make_data_epoch(step: Step, batch_size: int, augment: Augment | None = None) -> Callable:
    """A jitted ``epoch(state, data, perm, loss_state=None) -> (state, mean_metrics)``
    whose batches are ``{k: data[k][idx]}`` (``x``, ``y`` and cached arrays), each
    ``x`` passed through ``augment`` when given. The input state is donated."""
    body = epoch_body(with_augment(step, augment), batch_size)
    return jax.jit(lambda s, data, perm, ls=None: body(s, data, perm, ls), donate_argnums=(0,))


class Programs:
    """The jitted epoch, step and eval programs for one model/optimizer/transform/loss.

    Args:
      model, tx, transform, loss_fn: what one train step is made of.
      batch_size: examples per step (a multiple of the mesh's ``data`` axis).
      augment: optional ``(x, key) -> x`` applied to every training batch.
      mesh: a device mesh (:func:`jaxcomp.distributed.make_mesh`) or ``None``.
      stacked: the state has a leading settings axis (split over ``sweep``).
      state_sharding: with a mesh, the state's shardings (the epoch's output is
        constrained to them, so the next epoch gets exactly its own input layout).

    ``compiles`` counts traces of the epoch program, ``eval_compiles`` those of
    the eval program (each trace is one XLA compile).
    """

    def __init__(self, model: Model, tx: optax.GradientTransformation, *, batch_size: int,
                 transform: Transform | None = None, loss_fn: LossFn | None = None,
                 augment: Augment | None = None, mesh: Mesh | None = None,
                 stacked: bool = False, state_sharding: Any = None):
        self.model, self.transform, self.batch_size = model, transform, batch_size
        self.mesh, self.stacked, self.state_sharding = mesh, stacked, state_sharding
        self.compiles = 0
        self.eval_compiles = 0
        self._shared: tuple[bool, ...] | None = None
        step = with_augment(train_step_fn(model, tx, transform, loss_fn), augment)
        rows = None if mesh is None else NamedSharding(mesh, P("data"))
        body = epoch_body(step, batch_size, rows=rows)
        spmd = None if mesh is None else "sweep"

        def epoch(state, data, order, loss_state, shared):
            self.compiles += 1  # runs only while tracing
            if stacked:
                state, metrics = _vmapped(body, shared, spmd)(state, data, order, loss_state)
            else:
                state, metrics = body(state, data, order, loss_state)
            return self._constrain(state), metrics

        self._epoch = jax.jit(epoch, donate_argnums=(0,), static_argnums=(4,))
        self._step = jax.jit(lambda s, b: _constrained(step(s, b), self._constrain),
                             donate_argnums=(0,))
        ev = eval_step_fn(model, transform)
        if stacked:
            ev = jax.vmap(ev, in_axes=(0, 0, 0, None, None, None), spmd_axis_name=spmd)

        def evaluate(params, comp_state, model_state, x, y, w):
            self.eval_compiles += 1
            return ev(params, comp_state, model_state, x, y, w)

        self.eval = jax.jit(evaluate)

    def sharding_of(self, state: Any) -> Any:
        """The state's shardings on the mesh: those given at construction, else the
        settings axis over ``sweep`` (stacked) or replicated/``model``-split leaves."""
        if self.state_sharding is not None:
            return self.state_sharding
        from jaxcomp.distributed.sharding import stacked_shardings, state_shardings

        return (stacked_shardings if self.stacked else state_shardings)(self.mesh, state)

    def _constrain(self, state: Any) -> Any:
        if self.mesh is None:
            return state
        return jax.tree.map(jax.lax.with_sharding_constraint, state, self.sharding_of(state))

    @property
    def shared(self) -> tuple[bool, ...] | None:
        """Per state leaf of a stacked state, whether it enters the epoch unbatched
        (an integer counter equal in every setting, so a step-gated ``lax.cond``
        stays a branch under ``vmap``); ``None`` until the first epoch. A resumed
        sweep group sets the tuple it trained with, to reuse the same program."""
        return self._shared

    @shared.setter
    def shared(self, value: tuple[bool, ...] | None) -> None:
        self._shared = None if value is None else tuple(bool(v) for v in value)

    def note_shared(self, state: Any) -> None:
        """Find the leaves equal in every setting of the stacked ``state``."""
        self._shared = shared_leaves(state)

    def epoch(self, state: Any, data: dict[str, Any], order: Any, loss_state: Any = None
              ) -> tuple[Any, dict[str, jax.Array]]:
        """One epoch: ``(state, metrics)``; metrics are means over the epoch's steps
        (``(settings,)`` arrays when stacked). The input state's buffers are donated.

        ``order``: the example indices in batch order, ``(steps * batch,)`` shared by
        all settings or ``(settings, steps * batch)`` one per setting; ``None`` when
        ``data`` holds ready batches.
        """
        if not self.stacked:
            return self._epoch(state, data, order, loss_state, ())
        n = len(jax.tree.leaves(state))
        if self._shared is None or len(self._shared) != n:
            self._shared = shared_leaves(state)
        if any(self._shared):
            try:
                return self._epoch(state, data, order, loss_state, self._shared)
            except ValueError as e:  # an "equal" counter that a setting's step changes
                if "out_axes" not in str(e):
                    raise
                self._shared = (False,) * n
        return self._epoch(state, data, order, loss_state, self._shared)

    def step(self, state: Any, batch: dict[str, Any]) -> tuple[Any, dict[str, jax.Array]]:
        """One jitted train step (unstacked states); the input state is donated."""
        return self._step(state, batch)


def _constrained(out: tuple[Any, dict], constrain: Callable[[Any], Any]) -> tuple[Any, dict]:
    return constrain(out[0]), out[1]


def _vmapped(body: Callable, shared: tuple[bool, ...], spmd: str | None) -> Callable:
    """``body`` vmapped over the settings axis of the state, the per-setting order and
    loss state; leaves marked ``shared`` go in (and come out) unbatched."""

    def run(state, data, order, loss_state):
        leaves, treedef = jax.tree.flatten(state)
        n_set = leaves[0].shape[0] if leaves else 0
        axes = treedef.unflatten([None if sh else 0 for sh in shared])
        state = treedef.unflatten([leaf[0] if sh else leaf
                                   for leaf, sh in zip(leaves, shared, strict=True)])
        order_axis = None if order is None or jnp.ndim(order) == 1 else 0
        ls_axis = None if loss_state is None else 0
        state, metrics = jax.vmap(body, in_axes=(axes, None, order_axis, ls_axis),
                                  out_axes=(axes, 0), spmd_axis_name=spmd)(
            state, data, order, loss_state)
        out = jax.tree.leaves(state)
        state = treedef.unflatten([jnp.broadcast_to(leaf, (n_set, *leaf.shape)) if sh
                                   else leaf for leaf, sh in zip(out, shared, strict=True)])
        return state, metrics

    return run


def shared_leaves(state: Any, max_size: int = 64) -> tuple[bool, ...]:
    """Per leaf of a stacked state: a small integer array equal in every setting.

    Example:
        >>> import numpy as np
        >>> shared_leaves({"step": np.zeros((3,), np.int32), "w": np.ones((3, 2))})
        (True, False)
    """
    from jaxcomp.distributed.sharding import to_host

    out = []
    for leaf in jax.tree.leaves(state):
        ok = (hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.integer)
              and np.ndim(leaf) >= 1 and np.size(leaf) <= max_size * max(np.shape(leaf)[0], 1))
        if ok:
            host = to_host(leaf)  # every process calls this in the same order (SPMD)
            ok = bool(np.all(host == host[:1]))
        out.append(ok)
    return tuple(out)


__all__ = ["Augment", "Programs", "epoch_body", "make_data_epoch", "make_epoch_scan",
           "shared_leaves", "with_augment"]
