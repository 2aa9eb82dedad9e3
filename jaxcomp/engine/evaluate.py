"""The one evaluation loop: fixed-size batches over a split, the last one padded
with zero-weight rows (so one compile serves every batch), sums kept in float64.

Works for one model or a stacked settings axis (the eval program returns
``(settings,)`` sums), on the host's default device or split over a mesh's
``data`` axis (each process loads only its own rows).

Example:
    >>> import numpy as np
    >>> [int(w.sum()) for _, _, w in padded_batches(np.zeros((10, 2)), np.zeros(10), batch_size=4)]
    [4, 4, 2]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np


def padded_batches(*arrays: Any, batch_size: int) -> Iterator[tuple[np.ndarray, ...]]:
    """Consecutive batches of ``arrays`` (equal lengths) plus a weight column: rows
    past the end are zeros with weight 0, so every batch has ``min(batch_size, n)`` rows.

    Example:
        >>> import numpy as np
        >>> [b[0].tolist() for b in padded_batches(np.arange(3), batch_size=2)]
        [[0, 1], [2, 0]]
    """
    n = len(arrays[0])
    bs = min(batch_size, n)
    for i in range(0, n, bs):
        parts = [np.asarray(a[i:i + bs]) for a in arrays]
        w = np.ones(len(parts[0]), np.float32)
        pad = bs - len(w)
        if pad:
            parts = [np.concatenate([p, np.zeros((pad, *p.shape[1:]), p.dtype)]) for p in parts]
            w = np.concatenate([w, np.zeros(pad, np.float32)])
        yield (*parts, w)


def eval_totals(fn: Callable[..., dict[str, Any]], args: tuple, x: Any, y: Any, *,
                batch_size: int = 1000, mesh: Any = None) -> dict[str, Any]:
    """Sum ``fn(*args, xb, yb, wb)`` over the padded batches of ``(x, y)``.

    ``fn`` returns sums (``correct``, ``nll``, ``count`` or any others); the
    totals are float64 scalars, or ``(settings,)`` arrays for a stacked program.
    """
    from jaxcomp.distributed.sharding import to_host

    if mesh is not None:
        from jaxcomp.distributed.feed import eval_batches

        batches = eval_batches(mesh, x, y, batch_size)
    else:
        batches = padded_batches(x, y, batch_size=batch_size)
    totals: dict[str, Any] = {}
    for xb, yb, wb in batches:
        out = fn(*args, xb, yb, wb)
        for k, v in out.items():
            totals[k] = totals.get(k, 0.0) + to_host(v).astype(np.float64)
    return totals


def evaluate_state(fn: Callable[..., dict[str, Any]], state: Any, x: Any, y: Any, *,
                   batch_size: int = 1000, mesh: Any = None) -> dict[str, Any]:
    """Accuracy and mean NLL of a train state with an eval program
    ``(params, comp_state, model_state, x, y, w) -> sums``: floats for one model,
    ``(settings,)`` arrays for a stacked state."""
    t = eval_totals(fn, (state.params, state.comp_state, state.model_state), x, y,
                    batch_size=batch_size, mesh=mesh)
    acc, nll = t["correct"] / t["count"], t["nll"] / t["count"]
    if np.ndim(acc) == 0:
        return {"accuracy": float(acc), "nll": float(nll)}
    return {"accuracy": acc, "nll": nll}


__all__ = ["eval_totals", "evaluate_state", "padded_batches"]
