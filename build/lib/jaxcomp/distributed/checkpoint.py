"""Checkpoints of a mesh-resident state that only process 0 writes.

``save`` reads every leaf to the host (replicated leaves locally; leaves split
over processes are all-gathered), process 0 writes one ``.npz`` per epoch
through a temporary file and an atomic rename (keeping the newest
``max_to_keep``), then all processes meet at a barrier — so when a process
dies afterwards, the checkpoint is complete. ``restore_latest`` reads on
process 0 and broadcasts to every process, so other hosts need no shared
filesystem. Meant for the small and medium models jaxcomp trains; for states
that do not fit one host's memory use orbax's multi-process checkpointing.

Example:
    >>> import tempfile, jax, jax.numpy as jnp
    >>> from jaxcomp.distributed.checkpoint import HostCheckpointer
    >>> ck = HostCheckpointer(tempfile.mkdtemp())
    >>> state = {"w": jnp.arange(3.0), "key": jax.random.key(1)}
    >>> ck.save(state, epoch=2)
    >>> restored, epoch = ck.restore_latest(state)
    >>> epoch, restored["w"].tolist()
    (2, [0.0, 1.0, 2.0])
"""

from __future__ import annotations

import os
import re
from typing import Any

import jax
import numpy as np

from jaxcomp.core.errors import ConfigError
from jaxcomp.distributed.sharding import to_host

_NAME = re.compile(r"^epoch_(\d+)\.npz$")


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _meta(x: Any) -> tuple[tuple[int, ...], np.dtype]:
    if _is_key(x):
        x = jax.random.key_data(x)
    return tuple(np.shape(x)), np.dtype(x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype)


class HostCheckpointer:
    """Per-epoch ``.npz`` checkpoints of any pytree, written by process 0 only."""

    def __init__(self, directory: str, max_to_keep: int = 2):
        if max_to_keep < 1:
            raise ConfigError(f"checkpoint.max_to_keep: got {max_to_keep}; must be >= 1")
        self.directory = os.path.abspath(directory)
        self.max_to_keep = max_to_keep
        if jax.process_index() == 0:
            os.makedirs(self.directory, exist_ok=True)

    def _epochs(self) -> list[int]:
        if not os.path.isdir(self.directory):
            return []
        return sorted(int(m.group(1)) for f in os.listdir(self.directory)
                      if (m := _NAME.match(f)))

    def _path(self, epoch: int) -> str:
        return os.path.join(self.directory, f"epoch_{epoch}.npz")

    def save(self, state: Any, epoch: int) -> None:
        """Write ``state`` for ``epoch`` (every process must call this)."""
        leaves = [to_host(x) for x in jax.tree.leaves(state)]
        if jax.process_index() == 0:
            tmp = os.path.join(self.directory, f".epoch_{epoch}.tmp{os.getpid()}.npz")
            np.savez(tmp, *leaves)
            os.replace(tmp, self._path(epoch))
            for old in self._epochs()[:-self.max_to_keep]:
                os.remove(self._path(old))
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(f"jaxcomp_checkpoint_{epoch}")

    def restore_latest(self, target: Any) -> tuple[Any, int] | tuple[None, None]:
        """``(state, epoch)`` of the newest checkpoint shaped like ``target``, or
        ``(None, None)``; every process must call this and gets the same values."""
        flat, treedef = jax.tree.flatten(target)
        meta = [_meta(x) for x in flat]
        shapes, dtypes = [m[0] for m in meta], [m[1] for m in meta]
        epoch, leaves = -1, [np.zeros(s, d) for s, d in zip(shapes, dtypes, strict=True)]
        if jax.process_index() == 0:
            epochs = self._epochs()
            if epochs:
                epoch = epochs[-1]
                leaves = self._read(epoch, shapes, dtypes)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            epoch, leaves = multihost_utils.broadcast_one_to_all((np.int32(epoch), leaves))
            epoch, leaves = int(epoch), [np.asarray(x) for x in leaves]
        if epoch < 0:
            return None, None
        out = [jax.random.wrap_key_data(v, impl=jax.random.key_impl(t)) if _is_key(t)
               else v for v, t in zip(leaves, flat, strict=True)]
        return jax.tree.unflatten(treedef, out), epoch

    def _read(self, epoch: int, shapes: list, dtypes: list) -> list[np.ndarray]:
        path = self._path(epoch)
        try:
            with np.load(path) as z:
                leaves = [z[f"arr_{i}"] for i in range(len(z.files))]
        except Exception as e:
            raise ConfigError(f"checkpoint {path} is unreadable ({type(e).__name__}: "
                              f"{str(e)[:200]}); delete it to start over") from None
        got = [v.shape for v in leaves]
        if got != [tuple(s) for s in shapes]:
            raise ConfigError(f"checkpoint {path} holds {len(leaves)} arrays of shapes "
                              f"{got[:4]}...; the model expects {len(shapes)} of shapes "
                              f"{[tuple(s) for s in shapes][:4]}... (a different model or "
                              "optimizer?)")
        return [v.astype(d) for v, d in zip(leaves, dtypes, strict=True)]

    def close(self) -> None:
        """Nothing to release (kept for symmetry with the orbax Checkpointer)."""


__all__ = ["HostCheckpointer"]
