"""Epoch-end checkpoints of a vectorized group, so a killed sweep loses at most one
epoch of the group it was training.

A group (one vmapped chunk of settings) saves its stacked state — params, optimizer,
compression and model state, step, RNG keys — with the per-epoch losses, accuracies
and divergence steps so far, as an orbax checkpoint under
``OUT/groups/<id>/orbax/<epoch>``; ``<id>`` hashes the chunk's run keys (which hash
the configs) in their stacked order. A rerun that builds the same chunk restores
the newest checkpoint and trains from the next epoch; the data orders continue from
that epoch, so the records equal an uninterrupted run's. The folder is deleted once
the group's records are in the store.

The rule that keeps the cost low: the save of epoch ``k`` runs in orbax's background
thread while epoch ``k + 1`` trains, and the end of epoch ``k + 1`` first waits for
it. So whenever the sweep reports ``k + 1`` epochs done, epoch ``k`` is on disk (a
kill loses at most one epoch), and small runs do not wait for the disk. The last
epoch is not saved (the records follow at once).

Integrity: before each save a SHA-256 of the saved arrays (values, shapes, dtypes)
is written atomically beside it, and a restore recomputes it from what it read; once
a save has finished, the SHA-256 of each of its files is added (as the orbax
``Checkpointer`` of single runs keeps them), so a changed file is caught before orbax
reads it. A checkpoint that is unreadable, partial, changed, or made for other runs
is deleted with a one-line warning and the group starts over — it is never loaded.

Example:
    >>> import tempfile, jax.numpy as jnp, numpy as np
    >>> from jaxcomp.sweep.vectorized import StackedHistory
    >>> out = tempfile.mkdtemp()
    >>> state = {"w": jnp.ones((2, 3))}
    >>> gc = GroupCheckpoint(out, ["run-a", "run-b"], epochs=3)
    >>> gc.save(1, state, StackedHistory(1, np.ones((1, 2)), np.ones((1, 2)),
    ...                                  np.full(2, -1)), shared=(False,))
    >>> gc.close()
    >>> got = GroupCheckpoint(out, ["run-a", "run-b"], epochs=3).restore(state)
    >>> got.history.epoch, got.shared, np.asarray(got.state["w"]).tolist()
    (1, (False,), [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import sys
from collections.abc import Callable, Collection, Sequence
from typing import Any

import jax
import numpy as np

from jaxcomp.core.files import file_digests, write_json_atomic
from jaxcomp.sweep.grid import config_hash
from jaxcomp.sweep.grouping import fingerprint, tree_signature
from jaxcomp.sweep.vectorized import StackedHistory

GROUPS = "groups"
META = "meta.json"


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _host(tree: Any) -> Any:
    """A host copy (numpy, typed keys as their data) that outlives donated buffers."""
    return jax.tree.map(lambda x: np.array(jax.random.key_data(x) if _is_key(x) else x), tree)


def _digest(tree: Any) -> str:
    return hashlib.sha256((tree_signature(tree) + fingerprint(tree)).encode()).hexdigest()


def _quiet_closed_loop() -> None:
    """After a failed orbax read, its reader threads may still call into an event loop
    that orbax has closed; Python would print each such ``RuntimeError`` as a
    traceback. Drop only those (once installed, for the process)."""
    prev = sys.unraisablehook
    if getattr(prev, "_jaxcomp_quiet", False):
        return

    def hook(u: Any) -> None:
        if isinstance(u.exc_value, RuntimeError) and "Event loop is closed" in str(u.exc_value):
            return
        prev(u)

    hook._jaxcomp_quiet = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


@dataclasses.dataclass
class Resumed:
    """A restored group: its stacked ``state``, the ``history`` of the epochs done, and
    the program's ``shared`` leaves tuple it trained with."""

    state: Any
    history: StackedHistory
    shared: tuple[bool, ...] | None


class GroupCheckpoint:
    """The checkpoint folder of one vectorized chunk (see the module docstring).

    Args:
      out_dir: the sweep directory.
      keys: the run keys of the chunk's stacked settings, in order (padding included).
      epochs: the epochs the group trains.
      log: where the one-line warnings go (stderr by default).
    """

    def __init__(self, out_dir: str | os.PathLike, keys: Sequence[str], epochs: int,
                 log: Callable[[str], None] | None = None):
        self.keys, self.epochs = [str(k) for k in keys], int(epochs)
        self.dir = pathlib.Path(out_dir).absolute() / GROUPS / config_hash(
            {"keys": self.keys, "epochs": self.epochs})
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self._manager = None
        self._saving: int | None = None

    def _orbax(self):
        if self._manager is None:
            import orbax.checkpoint as ocp

            opts = ocp.CheckpointManagerOptions(max_to_keep=1, create=True)
            self._manager = ocp.CheckpointManager(str(self.dir / "orbax"), options=opts)
        return self._manager

    def _digest_path(self, epoch: int) -> pathlib.Path:
        return self.dir / "digests" / f"{epoch}.json"

    def save(self, epoch: int, state: Any, history: StackedHistory,
             shared: Sequence[bool] | None = None) -> None:
        """Start saving ``state`` after ``epoch`` (in the background) once the previous
        save is finished; the last epoch is not saved."""
        if epoch >= self.epochs:
            return
        tree = _host({"state": state, "losses": history.losses,
                      "accuracies": history.accuracies, "diverged": history.diverged_step})
        manager = self._orbax()
        self._finished()  # the previous epoch is on disk from here on
        if not (self.dir / META).exists():
            write_json_atomic(self.dir / META, {
                "keys": self.keys, "epochs": self.epochs,
                "signature": tree_signature(tree["state"])})
        write_json_atomic(self._digest_path(epoch), {
            "epoch": epoch, "sha256": _digest(tree),
            "shared": None if shared is None else [bool(s) for s in shared]})
        for old in (self.dir / "digests").glob("*.json"):
            if old.stem.isdigit() and int(old.stem) < epoch - 1:
                old.unlink(missing_ok=True)
        import orbax.checkpoint as ocp

        manager.save(epoch, args=ocp.args.StandardSave(tree))
        self._saving = epoch

    def _finished(self) -> None:
        """Wait for the save in flight; then add its files' checksums to its digest."""
        if self._manager is None or self._saving is None:
            return
        self._manager.wait_until_finished()
        epoch, self._saving = self._saving, None
        path = self._digest_path(epoch)
        step = self.dir / "orbax" / str(epoch)
        if path.exists() and step.is_dir():
            digest = json.loads(path.read_text())
            write_json_atomic(path, {**digest, "files": file_digests(step)})

    def restore(self, state: Any) -> Resumed | None:
        """The newest complete checkpoint of these runs, shaped like the fresh stacked
        ``state``; ``None`` when there is none. A broken or foreign one is deleted
        with a one-line warning (the group then starts over)."""
        if not self.dir.exists():
            return None
        try:
            meta = json.loads((self.dir / META).read_text())
            if meta.get("keys") != self.keys or meta.get("epochs") != self.epochs:
                raise ValueError("it was made for other runs")
            target = _host(state)
            if meta.get("signature") != tree_signature(target):
                raise ValueError("its state has another structure")
            for tmp in (self.dir / "orbax").glob("*.orbax-checkpoint-tmp*"):
                shutil.rmtree(tmp, ignore_errors=True)  # a save the kill interrupted
            epoch = self._orbax().latest_step()
            if epoch is None:
                raise ValueError("no save finished")
            n_set = len(self.keys)
            target = {"state": target, "losses": np.zeros((epoch, n_set)),
                      "accuracies": np.zeros((epoch, n_set)),
                      "diverged": np.zeros(n_set, np.int64)}
            digest = json.loads(self._digest_path(epoch).read_text())
            if "files" in digest:  # checked before orbax reads anything
                now = file_digests(self.dir / "orbax" / str(epoch))
                bad = sorted(k for k in set(now) | set(digest["files"])
                             if now.get(k) != digest["files"].get(k))
                if bad:
                    raise ValueError(f"checksum mismatch in {bad[:2]} of epoch {epoch}")
            import orbax.checkpoint as ocp

            tree = self._orbax().restore(epoch, args=ocp.args.StandardRestore(target))
            if _digest(tree) != digest.get("sha256"):
                raise ValueError(f"checksum mismatch in epoch {epoch}")
        except Exception as e:  # unreadable, partial or changed: start over, never load it
            _quiet_closed_loop()
            why = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
            self.log(f"sweep: warning: group checkpoint {self.dir} is unusable "
                     f"({type(e).__name__}: {why}); the group starts over")
            self.delete()
            return None
        restored = jax.tree.map(
            lambda v, t: jax.random.wrap_key_data(v, impl=jax.random.key_impl(t))
            if _is_key(t) else jax.numpy.asarray(v), tree["state"], state)
        shared = digest.get("shared")
        return Resumed(restored, StackedHistory(epoch, tree["losses"], tree["accuracies"],
                                                tree["diverged"]),
                       None if shared is None else tuple(shared))

    def close(self) -> None:
        """Wait for a save in flight and release orbax's threads."""
        if self._manager is not None:
            self._finished()
            self._manager.close()
            self._manager = None

    def delete(self) -> None:
        """Remove the folder (after the group's records are written)."""
        self.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def remove_finished(out_dir: str | os.PathLike, finished: set[str]) -> None:
    """Delete group checkpoints whose runs all finished (left by a group that fell back
    to one-by-one runs, or by an earlier chunking), and the folder once empty.

    Example:
        >>> import tempfile
        >>> remove_finished(tempfile.mkdtemp(), set())
    """
    root = pathlib.Path(out_dir) / GROUPS
    if not root.is_dir():
        return
    for d in root.iterdir():
        try:
            keys = json.loads((d / META).read_text())["keys"]
        except (OSError, ValueError, KeyError, TypeError):
            keys = None
        if keys is not None and not set(keys) <= finished:
            continue
        shutil.rmtree(d, ignore_errors=True)
    if not any(root.iterdir()):
        root.rmdir()


def epoch_end_hook(ckpt: GroupCheckpoint | None, prog: Any, progress: Any, group: str,
                   settings: int, epochs: int) -> Callable[[int, Any, StackedHistory], None]:
    """The ``on_epoch_state`` of a chunk's :func:`~jaxcomp.sweep.vectorized.train_stacked`:
    save the epoch (waiting for the previous save first), then report it to
    ``progress`` (a :class:`~jaxcomp.sweep.progress.SweepProgress` or ``None``) as
    ``settings`` setting-epochs — so an epoch is reported only when the one before is
    on disk.

    Example:
        >>> hook = epoch_end_hook(None, None, None, "g", 2, 3)
        >>> hook(1, None, None)
    """

    def hook(epoch: int, state: Any, history: StackedHistory) -> None:
        if ckpt is not None:
            ckpt.save(epoch, state, history, prog.shared)
        if progress is not None:
            progress.epochs(settings, group=group, epoch=epoch, of=epochs)

    return hook


def saved_chunks(out_dir: str | os.PathLike, pending: Collection[str]) -> list[list[str]]:
    """The run keys (stacked order, padding included) of saved group checkpoints whose
    runs are all ``pending``: a rerun builds these chunks again as they were, so they
    resume even when fewer runs are pending than when they were formed.

    Example:
        >>> import tempfile
        >>> saved_chunks(tempfile.mkdtemp(), {"a", "b"})
        []
    """
    root = pathlib.Path(out_dir) / GROUPS
    out: list[list[str]] = []
    taken: set[str] = set()
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        try:
            meta = json.loads((d / META).read_text())
            keys = [str(k) for k in meta["keys"]]
            named = d.name == config_hash({"keys": keys, "epochs": int(meta["epochs"])})
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if named and keys and set(keys) <= set(pending) and not set(keys) & taken:
            out.append(keys)
            taken |= set(keys)
    return out
