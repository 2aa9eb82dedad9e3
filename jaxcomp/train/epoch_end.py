"""What every training loop does when an epoch ends, written once.

:func:`close_epoch` evaluates when due, appends the epoch's record to the history,
saves the checkpoint and, beside it, the history (so a resumed run still reports
every epoch), then calls the user's ``on_epoch``. :func:`resumed_history` reads the
records back up to the restored epoch. ``jaxcomp.train.fit`` and the mesh loops of
``jaxcomp.distributed`` (data-parallel and stacked sweeps) all use them.

Example:
    >>> import tempfile
    >>> history = []
    >>> close_epoch(1, epochs=2, eval_every=1, record={"epoch": 1, "train_loss": 0.5},
    ...             state=None, evaluate=lambda s: {"accuracy": 0.9, "nll": 0.3},
    ...             history=history)
    >>> history
    [{'epoch': 1, 'train_loss': 0.5, 'test_accuracy': 0.9, 'test_nll': 0.3}]
    >>> d = tempfile.mkdtemp()
    >>> write_history(d, history)
    >>> resumed_history(d, 1) == history
    True
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from jaxcomp.core.files import json_default, write_json_atomic


def history_path(checkpoint_dir: str) -> str:
    """Where the per-epoch records are kept beside the checkpoints."""
    return os.path.join(os.path.abspath(checkpoint_dir), "history.json")


def resumed_history(checkpoint_dir: str | None, epoch: int) -> list[dict[str, Any]]:
    """The saved records of epochs ``<= epoch`` (empty when none were saved).

    Per-setting metrics saved as lists come back as numpy arrays.
    """
    if not checkpoint_dir:
        return []
    path = history_path(checkpoint_dir)
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        records = json.load(f)
    return [{k: np.asarray(v) if isinstance(v, list) else v for k, v in r.items()}
            for r in records if r["epoch"] <= epoch]


def write_history(checkpoint_dir: str, history: list[dict[str, Any]]) -> None:
    """Atomically save the history (per-setting metrics as lists)."""
    write_json_atomic(history_path(checkpoint_dir), history, default=json_default)


def close_epoch(epoch: int, *, epochs: int, eval_every: int, record: dict[str, Any],
                state: Any, evaluate: Callable[[Any], dict[str, Any]] | None,
                history: list[dict[str, Any]], ckpt: Any = None,
                checkpoint_dir: str | None = None, writer: bool = True,
                on_epoch: Callable[[int, Any, dict], None] | None = None) -> None:
    """End epoch ``epoch`` (1-based) of ``epochs``.

    Args:
      record: the epoch's training metrics; test metrics are added when due.
      evaluate: ``state -> {"accuracy", "nll"}`` on the test split (``None``: never).
      ckpt: a checkpointer with ``save(state, epoch)``, or ``None``.
      checkpoint_dir: where the history is saved beside the checkpoints.
      writer: this process writes files (only process 0 does in a multi-host run).
      on_epoch: ``(epoch, state, record)``, called last.
    """
    if evaluate is not None and (epoch % eval_every == 0 or epoch == epochs):
        ev = evaluate(state)
        record.update({"test_accuracy": ev["accuracy"], "test_nll": ev["nll"]})
    history.append(record)
    if ckpt is not None:
        ckpt.save(state, epoch)
        if checkpoint_dir and writer:
            write_history(checkpoint_dir, history)
    if on_epoch is not None:
        on_epoch(epoch, state, record)
