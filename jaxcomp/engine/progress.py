"""The training progress bar (stderr, so stdout holds only results).

Example:
    >>> progress_bar(False, 10, "mlp") is None
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np


class EpochBar:
    """A rich progress bar counting epochs, with the last loss and test accuracy."""

    def __init__(self, total: int, name: str):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                 TextColumn("{task.completed}/{task.total} epochs"),
                                 TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                                 TextColumn("{task.fields[info]}"), transient=False,
                                 console=Console(stderr=True))
        self.progress.start()
        self.task = self.progress.add_task(name, total=total, info="")

    def advance(self, record: dict[str, Any]) -> None:
        info = f"loss {_short(record['train_loss'])}"
        if "test_accuracy" in record:
            info += f"  test acc {_short(record['test_accuracy'])}"
        self.progress.update(self.task, advance=1, info=info)

    def close(self) -> None:
        self.progress.stop()


def _short(v: Any) -> str:
    """One number as ``0.1234``; several (stacked settings) as their median."""
    arr = np.asarray(v, np.float64)
    return f"{float(arr):.4f}" if arr.ndim == 0 else f"median {float(np.median(arr)):.4f}"


def progress_bar(enabled: bool, total: int, name: str) -> EpochBar | None:
    """An :class:`EpochBar` when ``enabled`` and there is something to do, else ``None``."""
    return EpochBar(total, name) if enabled and total > 0 else None


__all__ = ["EpochBar", "progress_bar"]
