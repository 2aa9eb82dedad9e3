"""Train many settings of your own model as one compiled program, from Python.

:func:`train_settings` is what ``jaxcomp sweep`` does for a group, without a
config file: S initial states (one per seed) with per-setting numbers written
into them (a learning rate in ``optax.inject_hyperparams``'s state, a sparsity
target in a pruner's state, a temperature in the loss state), stacked and
trained by one vmapped epoch program — on one device, or split over a mesh's
``sweep`` axis (and each batch over ``data``).

Example:
    >>> import jax.numpy as jnp, optax
    >>> from jaxcomp.data import synthetic
    >>> from jaxcomp.engine import train_settings
    >>> from jaxcomp.models import get_model
    >>> ds = synthetic(num_train=256, num_test=64)
    >>> model = get_model("mlp", input_shape=ds.input_shape, num_classes=4, features=(16,))
    >>> tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
    >>> def set_lr(state, lr):
    ...     state.opt_state.hyperparams["learning_rate"] = lr
    ...     return state
    >>> r = train_settings(model, ds, tx, seeds=[0, 0, 1], epochs=2, batch_size=32,
    ...                    settings=jnp.array([0.01, 0.1, 0.1]), apply_setting=set_lr)
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

from jaxcomp.core.errors import ConfigError
from jaxcomp.core.transform import Transform
from jaxcomp.data.dataset import Dataset
from jaxcomp.engine.loop import FitResult, OnEpoch, check_run_args, check_schedule, run
from jaxcomp.engine.programs import Augment, Programs
from jaxcomp.flax.model import Model
from jaxcomp.train.loop import init_state
from jaxcomp.train.state import TrainState, reproject
from jaxcomp.train.step import LossFn


def stack(trees: Sequence[Any]) -> Any:
    """Stack same-structure pytrees along a new leading axis.

    Example:
        >>> import numpy as np
        >>> stack([{"w": np.zeros(2)}, {"w": np.ones(2)}])["w"].shape
        (2, 2)
    """
    if not trees:
        raise ConfigError("settings: nothing to stack (an empty list)")
    return jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *trees)


def unstack(tree: Any, n: int) -> list[Any]:
    """The ``n`` pytrees of a stacked pytree."""
    return [jax.tree.map(lambda x, i=i: x[i], tree) for i in range(n)]


def train_settings(model: Model, ds: Dataset, tx: optax.GradientTransformation, *,
                   seeds: Sequence[int], epochs: int, batch_size: int,
                   settings: Any = None,
                   apply_setting: Callable[[TrainState, Any], TrainState] | None = None,
                   transform: Transform | None = None, loss_fn: LossFn | None = None,
                   loss_state: Any = None, cached: dict[str, Any] | None = None,
                   augment: Augment | None = None, mesh: Any = None,
                   data_seeds: Sequence[int] | int | None = None,
                   checkpoint_dir: str | None = None, eval_every: int = 1,
                   progress: bool = False, on_epoch: OnEpoch | None = None) -> FitResult:
    """Train ``len(seeds)`` settings of ``model`` together; one compile for all.

    Args:
      seeds: each setting's initialization seed (S of them).
      settings: an optional pytree of per-setting values with leading axis S,
        written into each initial state by ``apply_setting(state, setting)``.
      loss_state: per-setting loss numbers (leading axis S), read as
        ``batch["loss_state"]``.
      cached, augment, transform, loss_fn: as in :func:`jaxcomp.train.fit`.
      mesh: split the settings over its ``sweep`` axis and each batch over ``data``.
      data_seeds: the data-order seed of each setting (default: its ``seeds``
        entry, so each setting's batches are exactly ``fit``'s); one int gives
        every setting the same order.
      checkpoint_dir, eval_every, progress, on_epoch: as in ``fit``.

    Returns:
      A :class:`~jaxcomp.engine.FitResult` whose state and history values have a
      leading settings axis; ``diverged_steps`` per setting.

    Raises:
      ConfigError: settings or loss states of another length than ``seeds``, S
        not a multiple of the mesh's ``sweep`` axis, bad epochs or batch size.
    """
    seeds = [int(s) for s in np.asarray(seeds).reshape(-1)]
    s = len(seeds)
    if s == 0:
        raise ConfigError("train_settings: seeds is empty; give one seed per setting")
    check_schedule(ds, epochs, batch_size)
    check_run_args(tx=tx, transform=transform, eval_every=eval_every)
    for name, tree in (("settings", settings), ("loss_state", loss_state)):
        lead = {np.shape(x)[0] if np.ndim(x) else None for x in jax.tree.leaves(tree)}
        if tree is not None and lead != {s}:
            raise ConfigError(f"train_settings: {name} has leading axis {sorted(lead, key=str)}"
                              f"; it must be {s} (one entry per seed)")
    if settings is not None and apply_setting is None:
        raise ConfigError("train_settings: settings given without apply_setting(state, "
                          "setting) to write them into the state")
    states = []
    for i, seed in enumerate(seeds):
        st = init_state(model, ds, tx, seed=seed, transform=transform)
        if apply_setting is not None:  # it may write masks: params projected again
            st = reproject(apply_setting(st, jax.tree.map(lambda x, i=i: jnp.asarray(x)[i],
                                                          settings)), transform)
        states.append(st)
    progs = Programs(model, tx, batch_size=batch_size, transform=transform, loss_fn=loss_fn,
                     augment=augment, mesh=mesh, stacked=True)
    if mesh is not None:
        from jaxcomp.distributed.sharding import check_divisible

        check_divisible("train.batch_size", batch_size, mesh, "data")
        check_divisible("settings", s, mesh, "sweep")
    order = seeds if data_seeds is None else data_seeds
    if not isinstance(order, int | np.integer) and len(order) != s:
        raise ConfigError(f"train_settings: data_seeds has {len(order)} entries for {s} seeds")
    return run(progs, stack(states), ds, epochs=epochs, seeds=order, loss_state=loss_state,
               cached=cached, checkpoint_dir=checkpoint_dir, eval_every=eval_every,
               progress=progress, name=f"{model.name} x{s}", on_epoch=on_epoch)


__all__ = ["stack", "train_settings", "unstack"]
