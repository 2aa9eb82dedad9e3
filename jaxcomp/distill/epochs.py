"""Whole-epoch ``lax.scan`` training where each batch also carries cached
per-example arrays (the teacher's logits) and inputs may be augmented.

The cached arrays sit on the device beside ``x`` and ``y`` and are indexed
inside the scan, so a distillation epoch with a cached teacher costs the same
as plain training. This is :func:`jaxcomp.train.fit` with ``scan=True``,
``cached`` and ``augment`` (one engine serves both); any
:class:`~jaxcomp.core.transform.Transform` (pruning, quantization) composes.

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

from typing import Any

import numpy as np
import optax

from jaxcomp.core.transform import Transform
from jaxcomp.data.dataset import Dataset
from jaxcomp.engine.loop import FitResult
from jaxcomp.engine.programs import Augment, make_data_epoch
from jaxcomp.flax.model import Model
from jaxcomp.train.loop import fit
from jaxcomp.train.state import TrainState
from jaxcomp.train.step import LossFn


def fit_scan(model: Model, ds: Dataset, tx: optax.GradientTransformation, *, epochs: int,
             batch_size: int, seed: int = 0, transform: Transform | None = None,
             loss_fn: LossFn | None = None, loss_state: Any = None,
             cached: dict[str, np.ndarray] | None = None, augment: Augment | None = None,
             state: TrainState | None = None, eval_every: int = 1) -> FitResult:
    """Train with one ``lax.scan`` per epoch; ``cached`` arrays ride along in each batch.

    Shuffling is :func:`jaxcomp.data.epoch_permutation` (as in ``fit``), so the same
    seed gives the same batches with and without a teacher. Repeated calls with the
    same model, optimizer, transform, loss and augmentation reuse one compiled epoch.
    """
    return fit(model, ds, tx, epochs=epochs, batch_size=batch_size, seed=seed,
               transform=transform, loss_fn=loss_fn, loss_state=loss_state, cached=cached,
               augment=augment, state=state, eval_every=eval_every, scan=True, progress=False)


__all__ = ["fit_scan", "make_data_epoch"]
