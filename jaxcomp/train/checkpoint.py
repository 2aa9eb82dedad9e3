"""Orbax checkpoints of a whole training state (params, optimizer, compression
and model state, step, key) with checksums, resume, and a mesh mode.

Every training path saves through this one class. On a mesh (``gather=True``)
every leaf is read to the host first (leaves split over processes are
all-gathered), only process 0 writes, and a restore is read by process 0 and
broadcast, so other hosts need no shared filesystem.

Example:
    >>> import tempfile, jax, jax.numpy as jnp, optax
    >>> from jaxcomp.train import create_state
    >>> from jaxcomp.train.checkpoint import Checkpointer
    >>> s = create_state({"w": jnp.ones(2)}, {}, optax.adam(1e-3), key=jax.random.key(0))
    >>> ck = Checkpointer(tempfile.mkdtemp())
    >>> ck.save(s, epoch=1)
    >>> restored, epoch = ck.restore_latest(s)
    >>> epoch, restored.opt_state[0].count.dtype
    (1, dtype('int32'))
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxcomp.core.errors import ConfigError
from jaxcomp.core.files import file_digests, write_json_atomic


def _is_typed_key(k: Any) -> bool:
    return hasattr(k, "dtype") and jax.dtypes.issubdtype(k.dtype, jax.dtypes.prng_key)


def _to_saveable(state: Any) -> Any:
    """Typed PRNG keys become their raw key data (orbax stores plain arrays)."""
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_typed_key(x) else x, state)


def _rewrap(restored: Any, target: Any) -> Any:
    return jax.tree.map(lambda r, t: jax.random.wrap_key_data(r, impl=jax.random.key_impl(t))
                        if _is_typed_key(t) else r, restored, target)


def _check_shapes(where: str, restored: Any, target: Any) -> None:
    got = [tuple(np.shape(x)) for x in jax.tree.leaves(restored)]
    paths = jax.tree_util.tree_flatten_with_path(target)[0]
    want = [tuple(np.shape(x)) for _, x in paths]
    for (path, _), a, b in zip(paths, got, want, strict=False):
        if a != b:
            raise ConfigError(f"checkpoint {where}: state{jax.tree_util.keystr(path)} has "
                              f"shape {a} there but {b} in this run (written for another "
                              "model or optimizer?); delete it to start over")
    if len(got) != len(want):
        raise ConfigError(f"checkpoint {where} holds {len(got)} arrays; this run's state has "
                          f"{len(want)} (another model or optimizer?); delete it to start over")


class Checkpointer:
    """Step-wise saves under ``directory`` (one per epoch), keeping the newest ``max_to_keep``.

    Saves are atomic (orbax writes to a temporary directory and renames). After
    each save a SHA-256 of every file is written to ``.checksums/<epoch>.json``;
    restore verifies it, so a checkpoint that cannot be read *or whose bytes
    changed* is reported as a :class:`ConfigError` naming it, never loaded silently.

    Args:
      directory: where the checkpoints go (created).
      max_to_keep: how many of the newest to keep (>= 1).
      gather: the state lives on a device mesh, possibly over several processes:
        save host copies from process 0 only (every process calls ``save`` and
        ``restore_latest``; they meet at a barrier after each save).
    """

    def __init__(self, directory: str, max_to_keep: int = 2, *, gather: bool = False):
        if not isinstance(max_to_keep, int) or max_to_keep < 1:
            raise ConfigError(f"checkpoint.max_to_keep: got {max_to_keep!r}; must be >= 1")
        self.directory = os.path.abspath(directory)
        self.gather = gather
        self.writer = not gather or jax.process_index() == 0
        self.manager = None
        if self.writer:
            multi = jax.process_count() > 1
            mp = ocp.options.MultiprocessingOptions(primary_host=jax.process_index(),
                                                    active_processes={jax.process_index()}) \
                if multi else ocp.options.MultiprocessingOptions()
            if multi:  # orbax creates the root itself only when every process takes part
                os.makedirs(self.directory, exist_ok=True)
            opts = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=not multi,
                                                multiprocessing_options=mp)
            self.manager = ocp.CheckpointManager(self.directory, options=opts)

    def save(self, state: Any, epoch: int) -> None:
        """Write ``state`` as epoch ``epoch`` (with ``gather``, every process calls this)."""
        tree = _to_saveable(state)
        if self.gather:
            from jaxcomp.distributed.sharding import to_host

            tree = jax.tree.map(to_host, tree)
        if self.manager is not None:
            self.manager.save(epoch, args=ocp.args.StandardSave(tree))
            self.manager.wait_until_finished()
            self._write_checksums(epoch)
        if self.gather and jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(f"jaxcomp_checkpoint_{epoch}")

    def _step_dir(self, epoch: int) -> str:
        return os.path.join(self.directory, str(epoch))

    def _checksum_path(self, epoch: int) -> str:
        return os.path.join(self.directory, ".checksums", f"{epoch}.json")

    def _digest(self, epoch: int) -> dict[str, str]:
        return file_digests(self._step_dir(epoch))

    def _write_checksums(self, epoch: int) -> None:
        path = self._checksum_path(epoch)
        write_json_atomic(path, self._digest(epoch))
        kept = {str(s) for s in self.manager.all_steps()}
        for name in os.listdir(os.path.dirname(path)):
            if name.endswith(".json") and name[:-5] not in kept:
                os.remove(os.path.join(os.path.dirname(path), name))

    def _verify(self, epoch: int) -> None:
        path = self._checksum_path(epoch)
        if not os.path.isfile(path):
            print(f"jaxcomp: warning: checkpoint {self._step_dir(epoch)} has no checksum "
                  "(the run stopped right after writing it); restoring it unverified",
                  file=sys.stderr)
            return
        with open(path) as f:
            expected = json.load(f)
        actual = self._digest(epoch)
        bad = sorted(k for k in set(expected) | set(actual) if expected.get(k) != actual.get(k))
        if bad:
            raise ConfigError(
                f"checkpoint {self._step_dir(epoch)} is unreadable or incomplete (checksum "
                f"mismatch in {bad[:3]}); delete it to start over")

    def latest_epoch(self) -> int | None:
        return None if self.manager is None else self.manager.latest_step()

    def restore_latest(self, target: Any) -> tuple[Any, int] | tuple[None, None]:
        """``(state, epoch)`` of the newest checkpoint shaped like ``target``, or
        ``(None, None)`` if none. With ``gather`` every process gets the same values
        (host arrays, to be placed on the mesh by the caller)."""
        saveable = _to_saveable(target)
        epoch, restored = (None, None) if self.manager is None else self._read(saveable)
        if self.gather and jax.process_count() > 1:
            from jax.experimental import multihost_utils

            leaves, treedef = jax.tree.flatten(saveable)
            local = (jax.tree.leaves(restored) if restored is not None
                     else [np.zeros(np.shape(x), x.dtype) for x in leaves])
            e, local = multihost_utils.broadcast_one_to_all(
                (np.int32(-1 if epoch is None else epoch), local))
            epoch = None if int(e) < 0 else int(e)
            restored = None if epoch is None else jax.tree.unflatten(
                treedef, [np.asarray(v) for v in local])
        if epoch is None:
            return None, None
        return _rewrap(restored, target), epoch

    def _read(self, saveable: Any) -> tuple[int | None, Any]:
        epoch = self.manager.latest_step()
        if epoch is None:
            return None, None
        if os.path.isdir(self._step_dir(epoch)):
            self._verify(epoch)
        if self.gather:
            abstract = jax.tree.map(lambda x: np.zeros(np.shape(x), x.dtype), saveable)
        else:
            abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, saveable)
        try:
            restored = self.manager.restore(epoch, args=ocp.args.StandardRestore(abstract))
        except Exception as e:
            raise ConfigError(
                f"checkpoint {self._step_dir(epoch)} is unreadable or incomplete, or was "
                f"written for another model or optimizer ({type(e).__name__}: "
                f"{str(e)[:200]}); delete it to start over") from None
        _check_shapes(self._step_dir(epoch), restored, saveable)
        return epoch, restored

    def close(self) -> None:
        if self.manager is not None:
            self.manager.close()
