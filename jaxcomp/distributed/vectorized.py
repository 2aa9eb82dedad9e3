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

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from jaxcomp.core.errors import ConfigError
from jaxcomp.core.transform import Transform
from jaxcomp.data.dataset import Dataset
from jaxcomp.distributed.sharding import (
    check_divisible,
    stacked_shardings,
    to_host,
)
from jaxcomp.engine.loop import FitResult, check_schedule, run
from jaxcomp.engine.mesh import evaluate_on_mesh, mesh_programs
from jaxcomp.engine.settings import stack
from jaxcomp.flax.model import Model
from jaxcomp.train.loop import init_state
from jaxcomp.train.state import TrainState, reproject
from jaxcomp.train.step import LossFn


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
            if apply_setting is None:
                return st
            return reproject(apply_setting(st, setting), transform)  # it may write masks

        return jax.vmap(one)(jnp.asarray(seeds), jax.tree.map(jnp.asarray, settings_np))

    sh = stacked_shardings(mesh, jax.eval_shape(init_all))
    return jax.jit(init_all, out_shardings=sh)()


def evaluate_stacked(model: Model, state: TrainState, x: np.ndarray, y: np.ndarray, *,
                     mesh: Mesh, transform: Transform | None = None, batch_size: int = 1000,
                     ) -> dict[str, np.ndarray]:
    """Per-setting accuracy and NLL, ``(S,)`` arrays; batches split over ``data``."""
    return evaluate_on_mesh(model, state, x, y, mesh=mesh, transform=transform,
                            batch_size=batch_size, stacked=True)


def fit_stacked(model: Model, ds: Dataset, tx: optax.GradientTransformation,
                state: TrainState, *, mesh: Mesh, epochs: int, batch_size: int,
                data_seed: int = 0, transform: Transform | None = None,
                loss_fn: LossFn | None = None, loss_state: Any = None, eval_every: int = 1,
                eval_batch_size: int = 1000, checkpoint_dir: str | None = None,
                on_epoch: Callable[[int, TrainState, dict], None] | None = None,
                ) -> FitResult:
    """Train the S stacked settings in ``state`` for ``epochs`` epochs.

    Args:
      state: a stacked state (from :func:`init_stacked`); its leading axis S
        must be a multiple of the ``sweep`` axis size. Its buffers are donated.
      data_seed: the shuffling seed, shared by every setting.
      loss_state: an optional pytree of per-setting loss numbers (leading axis S),
        read by the loss as ``batch["loss_state"]``.
      checkpoint_dir: save the stacked state every epoch (process 0 writes) and
        resume from the newest checkpoint there.
      Other arguments as in :func:`jaxcomp.train.fit`.

    Returns:
      A :class:`~jaxcomp.engine.FitResult`; each history entry holds ``(S,)``
      arrays. A setting whose loss turns NaN keeps training (the others are
      unaffected); ``diverged_steps`` says when.
    """
    check_schedule(ds, epochs, batch_size)
    check_divisible("train.batch_size", batch_size, mesh, "data")
    s = _num_settings(state)
    if loss_state is not None and _num_settings(loss_state) != s:
        raise ConfigError(f"sweep.loss_state: leading axis {_num_settings(loss_state)} "
                          f"does not match the {s} stacked settings")
    if getattr(transform, "project", None) is not None:  # each setting's params projected
        state = jax.vmap(lambda st: reproject(st, transform))(state)
    progs = mesh_programs(model, tx, batch_size, transform, loss_fn, mesh,
                          stacked_shardings(mesh, state), True)
    return run(progs, state, ds, epochs=epochs, seeds=data_seed, stream=True,
               loss_state=loss_state, checkpoint_dir=checkpoint_dir, eval_every=eval_every,
               eval_batch_size=eval_batch_size, on_epoch=on_epoch)


stack_trees = stack  # same-structure pytrees stacked along a new leading axis


def setting(tree: Any, i: int) -> Any:
    """Setting ``i`` of a stacked pytree, as host numpy arrays (any process may call it)."""
    return jax.tree.map(lambda x: to_host(x)[i], tree)


__all__ = ["evaluate_stacked", "fit_stacked", "init_stacked", "setting", "stack_trees"]
