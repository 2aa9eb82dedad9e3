"""Training recipes for pruning studies: one compiled epoch serves every setting.

:class:`PruneTrainer` trains a scan-able model (MLPs) through the engine with
the pruner as the compression transform (:func:`~jaxcomp.prune.pruning_transform`:
its numbers — sparsity, schedule, gate — are in the compression state) and Adam,
whose learning rate and L2 weight decay are in the optimizer state
(``optax.inject_hyperparams``), wrapped by :func:`~jaxcomp.prune.masked_updates`.
So dense training (sparsity 0), one-shot, gradual and iterative pruning, at
any learning rate, all reuse the one compiled epoch — only the state differs.

Example:
    >>> import jax
    >>> from jaxcomp.data import synthetic
    >>> from jaxcomp.models import get_model
    >>> from jaxcomp.prune.recipes import PruneTrainer
    >>> ds = synthetic(num_train=256, num_test=64)
    >>> model = get_model("mlp", input_shape=ds.input_shape, num_classes=4, features=(16,))
    >>> tr = PruneTrainer(model, ds, batch_size=32)
    >>> params = tr.init_params(0)
    >>> state = tr.state(params, sparsity=0.5, lr=1e-2, seed=0)
    >>> state = tr.train(state, epochs=2, seed=0)
    >>> round(tr.sparsity(state), 3), tr.evaluate(state) > 0.5
    (0.5, True)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcomp.core import schedules
from jaxcomp.data.dataset import Dataset
from jaxcomp.engine.evaluate import evaluate_state
from jaxcomp.engine.loop import epoch_order
from jaxcomp.engine.programs import Programs
from jaxcomp.flax.model import Model
from jaxcomp.prune.masks import apply_masks
from jaxcomp.prune.optax_wrapper import get_masks
from jaxcomp.prune.pruner import pruner
from jaxcomp.prune.state_transform import pruning_optimizer, pruning_transform
from jaxcomp.train.state import TrainState, create_state


def _adam_l2(learning_rate, weight_decay):
    return optax.chain(optax.add_decayed_weights(weight_decay), optax.adam(learning_rate))


class PruneTrainer:
    """Masked training of one model on one dataset; every setting shares one compile.

    Args:
      model, ds, batch_size: what to train, on what.
      score, allocation, where: the pruner's static structure (numbers come per run).
      schedule_kind: ``"one_shot"`` or ``"polynomial"`` — the schedule's type is
        structure; its numbers are per run.
    """

    def __init__(self, model: Model, ds: Dataset, *, batch_size: int = 128,
                 score: str = "magnitude", allocation: str = "layerwise", where: Any = None,
                 per_path: tuple[str, ...] | None = None, schedule_kind: str = "one_shot"):
        self.model, self.ds, self.batch_size = model, ds, batch_size
        self.score, self.allocation, self.where = score, allocation, where
        self.per_path, self.kind = per_path, schedule_kind
        transform, tx = self._tx(0.0, 1e-3, 0.0, 0, 0, 1)
        self.programs = Programs(model, tx, batch_size=batch_size, transform=transform)
        self.eval_programs = Programs(model, tx, batch_size=batch_size)  # raw params
        self.data = {"x": jnp.asarray(ds.x_train), "y": jnp.asarray(ds.y_train)}
        self.steps_per_epoch = len(ds.x_train) // batch_size

    def _tx(self, sparsity, lr, wd, begin, end, every, key_seed=0):
        if self.kind == "polynomial":
            sched = lambda s: schedules.polynomial(0.0, s, begin, end, 3.0, every)  # noqa: E731
        else:
            sched = lambda s: schedules.one_shot(s, at=begin)  # noqa: E731
        if self.per_path is not None:
            sp = sparsity if isinstance(sparsity, dict) else {p: sparsity for p in self.per_path}
            target = {p: sched(v) for p, v in sp.items()}
        else:
            target = sched(sparsity)
        t = pruner(self.score, target, allocation=self.allocation, where=self.where,
                   gate=(begin, end if self.kind == "polynomial" else begin, every))
        inner = optax.inject_hyperparams(_adam_l2)(learning_rate=lr, weight_decay=wd)
        transform = pruning_transform(t, seed=key_seed)
        return transform, pruning_optimizer(inner, transform)

    def init_params(self, seed: int) -> Any:
        """Fresh params from ``seed``."""
        params, _ = jax.jit(self.model.init)(jax.random.key(seed),
                                             jnp.asarray(self.ds.x_train[:1]))
        return params

    def state(self, params: Any, *, sparsity: Any = 0.0, lr: float = 1e-3, wd: float = 0.0,
              begin: int = 0, end: int = 0, every: int = 1, seed: int = 0) -> TrainState:
        """A train state whose optimizer/pruner numbers are this run's (same structure)."""
        transform, tx = self._tx(sparsity, lr, wd, begin, end, every, key_seed=seed)
        params = jax.tree.map(jnp.copy, params)  # the epoch donates its input
        return create_state(params, {}, tx, key=jax.random.key(seed), transform=transform)

    def state_with_masks(self, params: Any, masks: dict[str, Any], *, lr: float = 1e-3,
                         wd: float = 0.0, seed: int = 0) -> TrainState:
        """A train state that trains under the given fixed ``{path: mask}`` (no mask updates).

        The params are zeroed where masked; the pruner's gate never opens.
        """
        state = self.state(params, sparsity=0.0, lr=lr, wd=wd, begin=-1, end=-1, seed=seed)
        cs = state.comp_state
        old = cs["pruner"]["masks"]
        if set(old) != set(masks):
            raise ValueError(f"mask paths {sorted(masks)} differ from the trainer's {sorted(old)}")
        new = {p: jnp.array(masks[p], bool, copy=True) for p in old}  # the epoch donates
        zeroed = apply_masks(state.params, new)
        return state._replace(params=zeroed, comp_state={
            **cs, "pruner": {**cs["pruner"], "masks": new}})

    def train(self, state: TrainState, *, epochs: int, seed: int, first_epoch: int = 0
              ) -> TrainState:
        """``epochs`` epochs (data order from ``(seed, epoch)``)."""
        n = self.steps_per_epoch * self.batch_size
        for e in range(first_epoch, first_epoch + epochs):
            order = epoch_order(len(self.ds.x_train), seed, e, n)
            state, _ = self.programs.epoch(state, self.data, jnp.asarray(order))
        return state

    def evaluate(self, state_or_params: Any) -> float:
        """Test accuracy of a state's params (exactly zero where pruned) or of given params."""
        params = state_or_params.params if isinstance(state_or_params, TrainState) \
            else state_or_params
        state = TrainState(None, params, None, (), {}, None)
        return evaluate_state(self.eval_programs.eval, state, self.ds.x_test,
                              self.ds.y_test)["accuracy"]

    @staticmethod
    def masks(state: TrainState) -> dict[str, jax.Array]:
        return get_masks(state.comp_state)

    @staticmethod
    def sparsity(state: TrainState) -> float:
        m = get_masks(state.comp_state)
        return 1.0 - sum(int(v.sum()) for v in m.values()) / sum(int(v.size) for v in m.values())


def kept_fraction(masks: dict[str, Any]) -> dict[str, float]:
    """``{path: fraction kept}``."""
    return {p: float(np.mean(np.asarray(m))) for p, m in masks.items()}
