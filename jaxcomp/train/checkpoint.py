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

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from jaxcomp.core.errors import ConfigError


def _to_saveable(state: Any) -> Any:
    return state._replace(key=jax.random.key_data(state.key)) if _is_typed_key(state.key) \
        else state


def _is_typed_key(k: Any) -> bool:
    return hasattr(k, "dtype") and jax.dtypes.issubdtype(k.dtype, jax.dtypes.prng_key)


class Checkpointer:
    """Step-wise saves under ``directory`` (one per epoch), keeping the newest ``max_to_keep``.

    Saves are atomic (orbax writes to a temporary directory and renames); a
    checkpoint that cannot be read is reported as a :class:`ConfigError` naming it.
    """

    def __init__(self, directory: str, max_to_keep: int = 2):
        self.directory = os.path.abspath(directory)
        opts = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
        self.manager = ocp.CheckpointManager(self.directory, options=opts)

    def save(self, state: Any, epoch: int) -> None:
        self.manager.save(epoch, args=ocp.args.StandardSave(_to_saveable(state)))
        self.manager.wait_until_finished()

    def latest_epoch(self) -> int | None:
        return self.manager.latest_step()

    def restore_latest(self, target: Any) -> tuple[Any, int] | tuple[None, None]:
        """``(state, epoch)`` of the newest checkpoint, or ``(None, None)`` if none."""
        epoch = self.manager.latest_step()
        if epoch is None:
            return None, None
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
