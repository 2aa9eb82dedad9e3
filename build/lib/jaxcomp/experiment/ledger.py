"""The analytical ledger of a model: parameters, non-zeros, bytes at rest, FLOPs.

FLOPs come from XLA's cost analysis of the compiled forward pass at batch 1
(dense FLOPs; families that change the work, e.g. structured pruning or
factorized layers, report the FLOPs of the model they produce).

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp.models import get_model
    >>> from jaxcomp.experiment.ledger import analytical_ledger
    >>> m = get_model("lenet300", input_shape=(28, 28, 1))
    >>> p, s = m.init(jax.random.key(0), jnp.ones((1, 28, 28, 1)))
    >>> analytical_ledger(m, p, s, (28, 28, 1))["params"]
    266610
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcomp.flax.model import Model


def count_params(params: Any) -> int:
    return int(sum(np.size(x) for x in jax.tree.leaves(params)))


def count_nonzeros(params: Any) -> int:
    return int(sum(int(jnp.count_nonzero(x)) for x in jax.tree.leaves(params)))


def forward_flops(model: Model, params: Any, model_state: Any, input_shape: tuple) -> float:
    """XLA's FLOP count for one example's forward pass (``nan`` if unavailable)."""
    x = jnp.zeros((1, *input_shape), jnp.float32)
    try:
        lowered = jax.jit(lambda p, s, x: model.apply(p, s, x, train=False)[0]).lower(
            params, model_state, x)
        cost = lowered.compile().cost_analysis()
        if isinstance(cost, list):
            cost = cost[0]
        return float(cost.get("flops", float("nan")))
    except Exception:
        return float("nan")


def analytical_ledger(model: Model, params: Any, model_state: Any,
                      input_shape: tuple) -> dict[str, float]:
    """``params``, ``nonzeros``, ``bytes_fp32`` (dense at rest) and ``flops``."""
    n = count_params(params)
    return {"params": n, "nonzeros": count_nonzeros(params), "bytes_fp32": 4 * n,
            "bytes": 4 * n, "flops": forward_flops(model, params, model_state, input_shape)}
