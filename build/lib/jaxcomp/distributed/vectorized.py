"""A vectorized multi-setting trainer whose stacked state is split over ``sweep``.

S settings (seeds, and any per-setting numbers: learning rates injected with
``optax.inject_hyperparams``, sparsity targets or temperatures kept as arrays in
the compression / loss state) are stacked along a leading axis of one
:class:`~jaxcomp.train.TrainState`. One ``jax.vmap`` of
:func:`jaxcomp.train.train_step_fn` inside one ``lax.scan`` per epoch trains all
of them; the stacked axis is split over the mesh's ``sweep`` axis, so S devices
(or S groups of devices, each also splitting the batch over ``data``) run S
groups of settings at once. Every setting sees the same batches (one data order
per sweep, from ``data_seed``), so results do not depend on the mesh.

Example:
    >>> import numpy as np, optax
    >>> from jaxcomp.data import synthetic
    >>> from jaxcomp.distributed import make_mesh
    >>> from jaxcomp.distributed.vectorized import fit_stacked, init_stacked
    >>> from jaxcomp.models import get_model
    >>> ds = synthetic(num_train=256, num_test=128)
    >>> model = get_model("mlp", input_shape=ds.input_shape, num_classes=4, features=(16,))
    >>> mesh, tx = make_mesh(), optax.sgd(0.05)
    >>> state = init_stacked(model, ds, tx, seeds=[0, 1, 2], mesh=mesh)
    >>> r = fit_stacked(model, ds, tx, state, mesh=mesh, epochs=2, batch_size=32)
    >>> r.history[-1]["test_accuracy"].shape
    (3,)
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
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
from jaxcomp.distributed.feed import epoch_arrays, eval_batches
from jaxcomp.distributed.memo import memo
from jaxcomp.distributed.sharding import (
    check_divisible,
    constrain,
    put_global,
    replicated,
    stacked_shardings,
    to_host,
)
from jaxcomp.flax.model import Model
from jaxcomp.train.epoch_end import close_epoch, resumed_history
from jaxcomp.train.loop import init_state
from jaxcomp.train.state import TrainState
from jaxcomp.train.step import LossFn, eval_step_fn, train_step_fn


@dataclasses.dataclass
class SweepResult:
    """The stacked final state and per-epoch metrics, each an ``(S,)`` numpy array."""

    state: TrainState
    history: list[dict[str, Any]]
    train_seconds: float = 0.0

    @property
    def final(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}


def _num_settings(tree: Any) -> int:
    leaves = jax.tree.leaves(tree)
    return int(np.shape(leaves[0])[0]) if leaves else 0


def init_stacked(model: Model, ds: Dataset, tx: optax.GradientTransformation, *,
                 seeds: Sequence[int], mesh: Mesh, transform: Transform | None = None,
                 settings: Any = None,
                 apply_setting: Callable[[TrainState, Any], TrainState] | None = None,
                 ) -> TrainState:
    """S initial states (one per seed), stacked and split over ``sweep``, built under jit.

    Args:
      seeds: one initialization seed per setting (S of them).
      settings: an optional pytree of per-setting arrays with leading axis S.
      apply_setting: ``(state, setting) -> state``, e.g. writing a learning rate
        into ``opt_state.hyperparams`` or a sparsity target into ``comp_state``.

    Raises:
      ConfigError: S not a multiple of the ``sweep`` axis size, or settings of
        another length.
    """
    seeds = np.asarray(seeds, np.int32).reshape(-1)
    s = len(seeds)
    check_divisible("sweep.size", s, mesh, "sweep")
    if settings is not None and _num_settings(settings) != s:
        raise ConfigError(f"sweep.settings: got {_num_settings(settings)} settings for "
                          f"{s} seeds; give one of each per setting")
    settings_np = jax.tree.map(np.asarray, settings)

    def init_all():
        def one(seed, setting):
            st = init_state(model, ds, tx, seed=seed, transform=transform)
            return apply_setting(st, setting) if apply_setting is not None else st

        return jax.vmap(one)(jnp.asarray(seeds), jax.tree.map(jnp.asarray, settings_np))

    sh = stacked_shardings(mesh, jax.eval_shape(init_all))
    return jax.jit(init_all, out_shardings=sh)()


def _stacked_eval(model: Model, transform: Transform | None, mesh: Mesh, state_sh: Any):
    b = NamedSharding(mesh, P("data"))
    ev = jax.vmap(eval_step_fn(model, transform), in_axes=(0, 0, 0, None, None, None))
    return jax.jit(ev, in_shardings=(state_sh.params, state_sh.comp_state, state_sh.model_state,
                                     b, b, b), out_shardings=replicated(mesh))


def evaluate_stacked(model: Model, state: TrainState, x: np.ndarray, y: np.ndarray, *,
                     mesh: Mesh, transform: Transform | None = None, batch_size: int = 1000,
                     step_fn: Callable | None = None) -> dict[str, np.ndarray]:
    """Per-setting accuracy and NLL, ``(S,)`` arrays; batches split over ``data``."""
    fn = step_fn
    if fn is None:
        sh = stacked_shardings(mesh, state)
        state = put_global(state, sh)
        fn = _stacked_eval(model, transform, mesh, sh)
    totals: dict[str, np.ndarray] = {}
    for xb, yb, wb in eval_batches(mesh, x, y, batch_size):
        out = fn(state.params, state.comp_state, state.model_state, xb, yb, wb)
        for k, v in out.items():
            totals[k] = totals.get(k, 0.0) + to_host(v).astype(np.float64)
    return {"accuracy": totals["correct"] / totals["count"],
            "nll": totals["nll"] / totals["count"]}


def make_stacked_epoch(step: Callable, mesh: Mesh, state_sh: Any, *,
                       loss_state_sh: Any = None) -> Callable:
    """The jitted epoch ``(stacked_state, xs, ys, loss_state) -> (state, metrics)``.

    ``xs, ys`` are ``(steps, batch, ...)`` split over ``data`` along the batch;
    ``loss_state`` (or ``None``) has a leading setting axis; metrics are ``(S,)``
    means over the epoch's steps.
    """
    data_sh = NamedSharding(mesh, P(None, "data"))
    has_ls = loss_state_sh is not None

    def one(s, x, y, ls):
        batch = {"x": x, "y": y}
        if has_ls:
            batch["loss_state"] = ls
        return step(s, batch)

    vstep = jax.vmap(one, in_axes=(0, None, None, 0 if has_ls else None))

    def epoch(state, xs, ys, ls):
        def body(s, xy):
            s, m = vstep(s, xy[0], xy[1], ls)
            return constrain(s, state_sh), m

        state, metrics = jax.lax.scan(body, state, (xs, ys))
        return state, jax.tree.map(lambda v: jnp.mean(v, axis=0), metrics)

    ls_sh = loss_state_sh if has_ls else None
    return jax.jit(epoch, in_shardings=(state_sh, data_sh, data_sh, ls_sh),
                   out_shardings=(state_sh, replicated(mesh)), donate_argnums=(0,))


@memo
def _programs(model, tx, transform, loss_fn, mesh, state_sh, ls_sh):
    """The jitted stacked epoch and eval programs, reused across calls."""
    run = make_stacked_epoch(train_step_fn(model, tx, transform, loss_fn), mesh, state_sh,
                             loss_state_sh=ls_sh)
    return run, _stacked_eval(model, transform, mesh, state_sh)


def fit_stacked(model: Model, ds: Dataset, tx: optax.GradientTransformation,
                state: TrainState, *, mesh: Mesh, epochs: int, batch_size: int,
                data_seed: int = 0, transform: Transform | None = None,
                loss_fn: LossFn | None = None, loss_state: Any = None, eval_every: int = 1,
                eval_batch_size: int = 1000, checkpoint_dir: str | None = None,
                on_epoch: Callable[[int, TrainState, dict], None] | None = None,
                ) -> SweepResult:
    """Train the S stacked settings in ``state`` for ``epochs`` epochs.

    Args:
      state: a stacked state (from :func:`init_stacked`); its leading axis S
        must be a multiple of the ``sweep`` axis size.
      data_seed: the shuffling seed, shared by every setting.
      loss_state: an optional pytree of per-setting loss numbers (leading axis S),
        read by the loss as ``batch["loss_state"]``.
      checkpoint_dir: save the stacked state every epoch (process 0 writes) and
        resume from the newest checkpoint there.
      Other arguments as in :func:`jaxcomp.train.fit`.

    Returns:
      A :class:`SweepResult`; each history entry holds ``(S,)`` arrays. A setting
      whose loss turns NaN keeps training (the others are unaffected); its
      ``train_loss`` shows it.
    """
    if not isinstance(epochs, int) or epochs < 0:
        raise ConfigError(f"train.epochs: got {epochs!r}; must be an integer >= 0")
    if not isinstance(batch_size, int) or not 0 < batch_size <= len(ds.x_train):
        raise ConfigError(f"train.batch_size: got {batch_size!r}; allowed 1..{len(ds.x_train)}")
    check_divisible("train.batch_size", batch_size, mesh, "data")
    s = _num_settings(state)
    if loss_state is not None and _num_settings(loss_state) != s:
        raise ConfigError(f"sweep.loss_state: leading axis {_num_settings(loss_state)} "
                          f"does not match the {s} stacked settings")
    state_sh = stacked_shardings(mesh, state)
    ckpt = HostCheckpointer(checkpoint_dir) if checkpoint_dir else None
    start = 0
    if ckpt is not None:
        restored, last = ckpt.restore_latest(state)
        if restored is not None:
            state, start = restored, last
    history = resumed_history(checkpoint_dir, start)
    state = put_global(state, state_sh)
    ls_sh = None
    if loss_state is not None:
        ls_sh = stacked_shardings(mesh, loss_state)
        loss_state = put_global(loss_state, ls_sh)
    run, eval_fn = _programs(model, tx, transform, loss_fn, mesh, state_sh, ls_sh)
    steps = len(ds.x_train) // batch_size
    t0 = time.perf_counter()
    for epoch in range(start, epochs):
        perm = epoch_permutation(len(ds.x_train), data_seed, epoch)[: steps * batch_size]
        perm = perm.reshape(steps, batch_size)
        xs, ys = epoch_arrays(mesh, ds.x_train, ds.y_train, perm)
        state, m = run(state, xs, ys, loss_state)
        record: dict[str, Any] = {"epoch": epoch + 1, "train_loss": to_host(m["loss"]),
                                  "train_accuracy": to_host(m["accuracy"])}
        close_epoch(epoch + 1, epochs=epochs, eval_every=eval_every, record=record,
                    state=state, history=history, ckpt=ckpt, checkpoint_dir=checkpoint_dir,
                    writer=jax.process_index() == 0, on_epoch=on_epoch,
                    evaluate=lambda s: evaluate_stacked(
                        model, s, ds.x_test, ds.y_test, mesh=mesh, transform=transform,
                        batch_size=eval_batch_size, step_fn=eval_fn))
    return SweepResult(state, history, time.perf_counter() - t0)


def stack_trees(trees: Sequence[Any]) -> Any:
    """Stack equal-structured pytrees along a new leading axis (keys included)."""
    if not trees:
        raise ConfigError("sweep: nothing to stack (an empty list of settings)")
    return jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *trees)


def setting(tree: Any, i: int) -> Any:
    """Setting ``i`` of a stacked pytree, as host numpy arrays (any process may call it)."""
    return jax.tree.map(lambda x: to_host(x)[i], tree)


__all__ = ["SweepResult", "evaluate_stacked", "fit_stacked", "init_stacked",
           "make_stacked_epoch", "setting", "stack_trees"]
