"""Whole-epoch ``lax.scan`` training where each batch also carries cached
per-example arrays (the teacher's logits) and inputs may be augmented.

:func:`jaxcomp.train.fit` runs a Python loop when ``extra_batch`` is given;
here the cached arrays sit on the device beside ``x`` and ``y`` and are indexed
inside the scan, so a distillation epoch with a cached teacher costs the same
as plain training. Any :class:`~jaxcomp.core.transform.Transform` (pruning,
quantization) composes as in ``fit``.

Example:
    >>> import optax, jax
    >>> from jaxcomp.data import synthetic
    >>> from jaxcomp.models import get_model
    >>> from jaxcomp.distill.epochs import fit_scan
    >>> ds = synthetic(num_train=256, num_test=64)
    >>> m = get_model("mlp", input_shape=ds.input_shape, num_classes=4, features=(16,))
    >>> r = fit_scan(m, ds, optax.adam(1e-2), epochs=2, batch_size=32, seed=0)
    >>> len(r.history), r.history[-1]["test_accuracy"] > 0.5
    (2, True)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcomp.core.errors import ConfigError
from jaxcomp.core.transform import Transform
from jaxcomp.data.dataset import Dataset, epoch_permutation
from jaxcomp.flax.model import Model
from jaxcomp.train.loop import FitResult, init_state
from jaxcomp.train.state import TrainState, own_copy
from jaxcomp.train.step import LossFn, eval_step_fn, evaluate, train_step_fn

Augment = Callable[[jax.Array, jax.Array], jax.Array]


def make_data_epoch(step: Callable, batch_size: int, augment: Augment | None = None):
    """A jitted ``epoch(state, data, perm, loss_state=None) -> (state, mean_metrics)``.

    ``data`` is a dict of device arrays with a leading example axis (``x``, ``y``
    and any cached arrays); every batch is ``{k: data[k][idx]}``. ``augment(x, key)``
    runs on ``x`` with a key derived from the state's key and step.
    """

    def epoch(state, data, perm, loss_state=None):
        idx = perm.reshape((-1, batch_size))

        def body(s, ix):
            batch = {k: v[ix] for k, v in data.items()}
            if augment is not None:
                key = jax.random.fold_in(jax.random.fold_in(s.key, s.step), 7)
                batch["x"] = augment(batch["x"], key)
            if loss_state is not None:
                batch["loss_state"] = loss_state
            return step(s, batch)

        state, metrics = jax.lax.scan(body, state, idx)
        return state, jax.tree.map(jnp.mean, metrics)

    return jax.jit(epoch, donate_argnums=(0,))


def fit_scan(model: Model, ds: Dataset, tx: optax.GradientTransformation, *, epochs: int,
             batch_size: int, seed: int = 0, transform: Transform | None = None,
             loss_fn: LossFn | None = None, loss_state: Any = None,
             cached: dict[str, np.ndarray] | None = None, augment: Augment | None = None,
             state: TrainState | None = None, eval_every: int = 1,
             epoch_fn: Callable | None = None) -> FitResult:
    """Train with one ``lax.scan`` per epoch; ``cached`` arrays ride along in each batch.

    Shuffling is :func:`jaxcomp.data.epoch_permutation` (as in ``fit``), so the same
    seed gives the same batches with and without a teacher. ``epoch_fn`` reuses an
    already compiled epoch (from :func:`make_data_epoch`) across runs.
    """
    if epochs < 0:
        raise ConfigError(f"train.epochs: got {epochs}; must be >= 0")
    n = len(ds.x_train)
    if batch_size <= 0 or batch_size > n:
        raise ConfigError(f"train.batch_size: got {batch_size}; allowed 1..{n}")
    for k, v in (cached or {}).items():
        if len(v) != n:
            raise ConfigError(f"distill cache {k!r}: has {len(v)} rows but the training set "
                              f"has {n} examples")
    if state is None:
        state = init_state(model, ds, tx, seed=seed, transform=transform)
    else:
        state = own_copy(state)  # the epoch donates its input; keep the caller's arrays
    if epoch_fn is None:
        epoch_fn = make_data_epoch(train_step_fn(model, tx, transform, loss_fn), batch_size,
                                   augment)
    data = {"x": jnp.asarray(ds.x_train), "y": jnp.asarray(ds.y_train),
            **{k: jnp.asarray(v) for k, v in (cached or {}).items()}}
    eval_fn = jax.jit(eval_step_fn(model, transform))
    steps = n // batch_size
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    result = FitResult(state, history)
    for epoch in range(epochs):
        perm = epoch_permutation(n, seed, epoch)[: steps * batch_size]
        state, m = epoch_fn(state, data, jnp.asarray(perm), loss_state)
        record = {"epoch": epoch + 1, "train_loss": float(m["loss"]),
                  "train_accuracy": float(m["accuracy"])}
        if not np.isfinite(record["train_loss"]):
            result.diverged, result.diverged_step = True, int(state.step)
            history.append(record)
            break
        if (epoch + 1) % eval_every == 0 or epoch + 1 == epochs:
            ev = evaluate(model, state.params, state.model_state, ds.x_test, ds.y_test,
                          transform=transform, comp_state=state.comp_state, step_fn=eval_fn)
            record.update({"test_accuracy": ev["accuracy"], "test_nll": ev["nll"]})
        history.append(record)
    result.state = state
    result.train_seconds = time.perf_counter() - t0
    return result
