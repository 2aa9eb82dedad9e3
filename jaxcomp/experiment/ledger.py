"""The analytical ledger of a model: parameters, non-zeros, bytes at rest, FLOPs.

Size keys:

* ``bytes_fp32`` — every parameter as fp32 (dense);
* ``bytes`` — fp32 values at rest, sparse (bitmask or CSR) where the prune family
  ran; it ignores quantization;
* ``stored_bytes`` with ``encoding`` — the size of the compressed model under the
  encoding it would really be saved with: ``"fp32 dense"`` by default, the prune
  family's sparse fp32 storage (``"fp32 bitmask-sparse"``), the quant family's
  integer export (``"int4 codes + bitmask"``), the decompose family's factors
  (``"fp32 factors"``). Each family overwrites it with the artifact it produces.

FLOP keys (XLA's cost analysis of the forward pass at batch 1):

* ``flops`` — the dense count of the model as trained;
* ``flops_effective`` with ``flops_counting`` — what the compressed model costs:
  ``"dense"`` by default, the factorized model's count, or (prune family) the
  sparse count ``flops_sparse`` of the smaller model left after removing units
  whose weights are all zero (see :func:`jaxcomp.prune.report.effective_flops`).

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp.models import get_model
    >>> from jaxcomp.experiment.ledger import analytical_ledger
    >>> m = get_model("lenet300", input_shape=(28, 28, 1))
    >>> p, s = m.init(jax.random.key(0), jnp.ones((1, 28, 28, 1)))
    >>> led = analytical_ledger(m, p, s, (28, 28, 1))
    >>> led["params"], led["stored_bytes"], led["encoding"]
    (266610, 1066440, 'fp32 dense')
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcomp.flax.model import Model

#: The keys every new ledger carries for the report's default axes.
DEFAULT_KEYS = ("stored_bytes", "encoding", "flops_effective", "flops_counting")


def count_params(params: Any) -> int:
    return int(sum(np.size(x) for x in jax.tree.leaves(params)))


def count_nonzeros(params: Any) -> int:
    return int(sum(int(jnp.count_nonzero(x)) for x in jax.tree.leaves(params)))


def tree_bytes(tree: Any) -> int:
    """Bytes of every array of ``tree`` as stored (their own dtypes, dense).

    Example:
        >>> import numpy as np
        >>> tree_bytes({"a": np.zeros((2, 3), np.float32), "b": np.zeros(4, np.int8)})
        28
    """
    return int(sum(np.asarray(x).nbytes for x in jax.tree.leaves(tree)))


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


def ensure_defaults(ledger: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Fill the :data:`DEFAULT_KEYS` a ledger lacks from its dense entries
    (``stored_bytes = bytes_fp32``, ``flops_effective = flops``); families call it
    before overwriting them with what their artifact really costs.

    Example:
        >>> ensure_defaults({"bytes_fp32": 40, "flops": 100.0})["flops_counting"]
        'dense'
    """
    if "stored_bytes" not in ledger and "bytes_fp32" in ledger:
        ledger["stored_bytes"] = ledger["bytes_fp32"]
        ledger["encoding"] = "fp32 dense"
    if "flops_effective" not in ledger and "flops" in ledger:
        ledger["flops_effective"] = ledger["flops"]
        ledger["flops_counting"] = "dense"
    return ledger


def analytical_ledger(model: Model, params: Any, model_state: Any,
                      input_shape: tuple, *, flops: float | None = None) -> dict[str, Any]:
    """``params``, ``nonzeros``, ``bytes_fp32`` / ``bytes`` (dense fp32 at rest),
    ``flops`` (counted unless given: settings of one model share it) and the dense
    defaults of ``stored_bytes`` / ``encoding`` / ``flops_effective`` / ``flops_counting``."""
    n = count_params(params)
    if flops is None:
        flops = forward_flops(model, params, model_state, input_shape)
    led: dict[str, Any] = {"params": n, "nonzeros": count_nonzeros(params), "bytes_fp32": 4 * n,
                           "bytes": 4 * n, "flops": flops}
    return dict(ensure_defaults(led))
