"""Orbax checkpoints of the whole :class:`TrainState` (params, optimizer,
compression and model state, step), with resume.

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
import orbax.checkpoint as ocp

from jaxcomp.core.errors import ConfigError
from jaxcomp.core.files import file_digests, write_json_atomic


def _to_saveable(state: Any) -> Any:
    return state._replace(key=jax.random.key_data(state.key)) if _is_typed_key(state.key) \
        else state


def _is_typed_key(k: Any) -> bool:
    return hasattr(k, "dtype") and jax.dtypes.issubdtype(k.dtype, jax.dtypes.prng_key)


class Checkpointer:
    """Step-wise saves under ``directory`` (one per epoch), keeping the newest ``max_to_keep``.

    Saves are atomic (orbax writes to a temporary directory and renames). After
    each save a SHA-256 of every file is written to ``.checksums/<epoch>.json``;
    restore verifies it, so a checkpoint that cannot be read *or whose bytes
    changed* is reported as a :class:`ConfigError` naming it, never loaded silently.
    """

    def __init__(self, directory: str, max_to_keep: int = 2):
        self.directory = os.path.abspath(directory)
        opts = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
        self.manager = ocp.CheckpointManager(self.directory, options=opts)

    def save(self, state: Any, epoch: int) -> None:
        self.manager.save(epoch, args=ocp.args.StandardSave(_to_saveable(state)))
        self.manager.wait_until_finished()
        self._write_checksums(epoch)

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
        return self.manager.latest_step()

    def restore_latest(self, target: Any) -> tuple[Any, int] | tuple[None, None]:
        """``(state, epoch)`` of the newest checkpoint, or ``(None, None)`` if none."""
        epoch = self.manager.latest_step()
        if epoch is None:
            return None, None
        if os.path.isdir(self._step_dir(epoch)):
            self._verify(epoch)
        typed = _is_typed_key(target.key)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _to_saveable(target))
        try:
            restored = self.manager.restore(epoch, args=ocp.args.StandardRestore(abstract))
        except Exception as e:
            raise ConfigError(
                f"checkpoint {os.path.join(self.directory, str(epoch))} is unreadable or "
                f"incomplete ({type(e).__name__}: {str(e)[:200]}); delete it to start over"
            ) from None
        if typed:
            restored = restored._replace(key=jax.random.wrap_key_data(restored.key))
        return restored, epoch

    def close(self) -> None:
        self.manager.close()
