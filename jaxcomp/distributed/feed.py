"""Feeding sharded batches: each process gathers only its own rows of every batch.

Batches are global arrays split over the mesh's ``data`` axis. Each process
computes which rows its devices hold (:func:`~jaxcomp.distributed.sharding.process_rows`)
and indexes only those out of its numpy dataset; with the ``data`` axis spanning
hosts the processes load distinct shards.

Example:
    >>> import numpy as np
    >>> from jaxcomp.distributed import make_mesh
    >>> from jaxcomp.distributed.feed import epoch_arrays, eval_batches
    >>> x, y = np.arange(10.0)[:, None], np.arange(10)
    >>> xs, ys = epoch_arrays(make_mesh(), x, y, np.arange(8).reshape(2, 4))
    >>> xs.shape, [int(w.sum()) for _, _, w in eval_batches(make_mesh(), x, y, 4)]
    ((2, 4, 1), [4, 4, 2])
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxcomp.distributed.mesh import axis_size
from jaxcomp.distributed.sharding import from_process_rows


def epoch_arrays(mesh: Mesh, x: np.ndarray, y: np.ndarray,
                 order: np.ndarray) -> tuple[jax.Array, jax.Array]:
    """``(steps, batch, ...)`` inputs and labels for an epoch whose batches are the
    rows of ``order`` (a ``(steps, batch)`` index array), split over ``data``."""
    sh = NamedSharding(mesh, P(None, "data"))
    steps, bs = order.shape
    xs = from_process_rows(sh, (steps, bs, *x.shape[1:]), lambda r: x[order[:, r]], axis=1)
    ys = from_process_rows(sh, (steps, bs, *y.shape[1:]), lambda r: y[order[:, r]], axis=1)
    return xs, ys


def batch_rows(mesh: Mesh, arr: Any, idx: np.ndarray) -> jax.Array:
    """The rows ``idx`` of ``arr`` as one batch split over ``data`` (each process
    reads only its own rows)."""
    sh = NamedSharding(mesh, P("data"))
    arr = np.asarray(arr)
    return from_process_rows(sh, (len(idx), *arr.shape[1:]), lambda r: arr[idx[r]])


def batch_arrays(mesh: Mesh, x: np.ndarray, y: np.ndarray,
                 idx: np.ndarray) -> tuple[jax.Array, jax.Array]:
    """One batch (the rows ``idx``) split over ``data``."""
    return batch_rows(mesh, x, idx), batch_rows(mesh, y, idx)


def eval_batches(mesh: Mesh, x: np.ndarray, y: np.ndarray,
                 batch_size: int) -> Iterator[tuple[jax.Array, jax.Array, jax.Array]]:
    """``(x, y, weight)`` batches covering all of ``x`` in order, split over ``data``;
    the batch size is rounded up to the ``data`` axis and the last batch is
    padded with zero-weight rows (one compile for all batches)."""
    d = axis_size(mesh, "data")
    n = len(x)
    bs = -(-min(batch_size, n) // d) * d
    sh = NamedSharding(mesh, P("data"))
    ones = np.ones(n, np.float32)

    def rows(arr: np.ndarray, r: slice, start: int) -> np.ndarray:
        lo, hi = start + r.start, min(start + r.stop, n)
        part = np.asarray(arr[lo:hi]) if lo < hi else np.zeros((0, *arr.shape[1:]), arr.dtype)
        pad = (r.stop - r.start) - len(part)
        if pad:
            part = np.concatenate([part, np.zeros((pad, *arr.shape[1:]), arr.dtype)])
        return part

    for i in range(0, n, bs):
        yield tuple(from_process_rows(sh, (bs, *a.shape[1:]), lambda r, a=a, i=i: rows(a, r, i))
                    for a in (x, y, ones))


__all__ = ["batch_arrays", "batch_rows", "epoch_arrays", "eval_batches"]
