"""Precompute a frozen teacher's outputs over a dataset once, instead of
running it in every step of every epoch.

:func:`teacher_outputs` runs the teacher in eval mode in jitted batches and
returns numpy arrays (``teacher_logits`` and, with ``rules``, captured features
``teacher_features/<path>``); :func:`cached_extra_batch` turns them into the
``extra_batch(indices) -> dict`` hook of :func:`jaxcomp.train.fit`.

Example:
    >>> import jax, jax.numpy as jnp, numpy as np
    >>> from jaxcomp.models import get_model
    >>> from jaxcomp.distill.cache import cached_extra_batch, teacher_outputs
    >>> m = get_model("mlp", input_shape=(4,), num_classes=3, features=(8,))
    >>> p, s = m.init(jax.random.key(0), jnp.ones((1, 4)))
    >>> out = teacher_outputs(m, p, s, np.ones((10, 4), np.float32), batch_size=4)
    >>> extra = cached_extra_batch(out)
    >>> out["teacher_logits"].shape, extra(np.array([0, 3]))["teacher_logits"].shape
    ((10, 3), (2, 3))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jaxcomp.distill.capture import Rules, capture
from jaxcomp.flax.model import Model

FEATURE_PREFIX = "teacher_features/"


def teacher_outputs(model: Model, params: Any, model_state: Any, x: np.ndarray, *,
                    batch_size: int = 1000, rules: Rules | None = None) -> dict[str, np.ndarray]:
    """The teacher's logits (and captured features) on every row of ``x``.

    One compile: the last batch is padded to ``batch_size``.
    """
    if rules is not None:
        fm = capture(model, rules)

        def fwd(p, s, xb):
            out, feats, _ = fm.apply(p, s, xb, train=False)
            return {"teacher_logits": out,
                    **{FEATURE_PREFIX + k: v for k, v in feats.items()}}
    else:
        def fwd(p, s, xb):
            return {"teacher_logits": model.apply(p, s, xb, train=False)[0]}

    fwd = jax.jit(fwd)
    n = len(x)
    bs = min(batch_size, n)
    chunks: dict[str, list[np.ndarray]] = {}
    for i in range(0, n, bs):
        xb = np.asarray(x[i:i + bs])
        m = len(xb)
        if m < bs:
            xb = np.concatenate([xb, np.zeros((bs - m, *xb.shape[1:]), xb.dtype)])
        for k, v in fwd(params, model_state, xb).items():
            chunks.setdefault(k, []).append(np.asarray(v)[:m])
    return {k: np.concatenate(v) for k, v in chunks.items()}


def cached_extra_batch(arrays: dict[str, np.ndarray]) -> Callable[[np.ndarray], dict[str, Any]]:
    """``extra_batch(indices)`` for :func:`jaxcomp.train.fit`: rows of the cached arrays."""

    def extra_batch(indices: np.ndarray) -> dict[str, Any]:
        return {k: v[indices] for k, v in arrays.items()}

    return extra_batch
