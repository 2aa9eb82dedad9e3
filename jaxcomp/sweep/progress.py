"""The sweep's progress on stderr, counted in setting-epochs (settings × epochs), so a
vectorized group moves the bar after every epoch instead of only when its records land.

On a terminal it is a rich bar (``sweep ━━━ 45/180 setting-epochs · runs 3/15 ·
elapsed · eta``); elsewhere (a log file, a pipe) it prints one plain line per epoch of
a vectorized group and one per finished run, each with the same counts and an ETA
from the average rate so far.

Example:
    >>> import io
    >>> out = io.StringIO()
    >>> p = SweepProgress(total_epochs=4, total_runs=2, stream=out)
    >>> p.epochs(2, group="g", epoch=1, of=2)
    >>> p.runs(2)
    >>> p.close()
    >>> out.getvalue().splitlines()[0].startswith("sweep: group g epoch 1/2: 2/4 setting-epochs")
    True
"""

from __future__ import annotations

import datetime
import sys
import time
from typing import IO


def _clock(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(max(seconds, 0.0))))


class SweepProgress:
    """Setting-epochs and runs done out of the totals, with an ETA, on ``stream``.

    Args:
      total_epochs: the setting-epochs this process will train (each pending run's epochs).
      total_runs: the pending runs.
      stream: where to write (stderr by default); a terminal gets a rich bar, anything
        else plain lines.
    """

    def __init__(self, total_epochs: int, total_runs: int, stream: IO[str] | None = None):
        self.stream = stream if stream is not None else sys.stderr
        self.total, self.done = max(int(total_epochs), 0), 0
        self.total_runs, self.done_runs = int(total_runs), 0
        self.t0 = time.perf_counter()
        self._first: tuple[float, int] | None = None
        self._rich = None
        if getattr(self.stream, "isatty", lambda: False)():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._rich = Progress(
                TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(),
                TextColumn("setting-epochs · runs {task.fields[runs]}"), TimeElapsedColumn(),
                TextColumn("eta"), TimeRemainingColumn(), transient=False,
                console=Console(file=self.stream))
            self._rich.start()
            self._task = self._rich.add_task("sweep", total=self.total, runs=self._runs())

    def _runs(self) -> str:
        return f"{self.done_runs}/{self.total_runs}"

    def _line(self, what: str) -> None:
        now = time.perf_counter()
        elapsed = now - self.t0
        if self._first is None:  # the rate after the first report leaves setup and compile out
            self._first = (now, self.done)
        t1, d1 = self._first
        rate = (self.done - d1) / (now - t1) if self.done > d1 and now > t1 else \
            (self.done / elapsed if self.done and elapsed > 0 else 0.0)
        eta = (self.total - self.done) / rate if rate > 0 else None
        print(f"sweep: {what}: {self.done}/{self.total} setting-epochs, runs {self._runs()}, "
              f"{_clock(elapsed)} elapsed, eta {_clock(eta) if eta is not None else '-:--:--'}",
              file=self.stream, flush=True)

    def epochs(self, n: int, *, group: str = "", epoch: int = 0, of: int = 0) -> None:
        """``n`` setting-epochs done (e.g. one epoch of a group of ``n`` settings)."""
        self.done += n
        if self._rich is not None:
            self._rich.update(self._task, advance=n)
        elif group:
            self._line(f"group {group} epoch {epoch}/{of}")

    def skip(self, n: int) -> None:
        """``n`` setting-epochs need no training here (resumed from a checkpoint)."""
        self.total = max(self.total - n, self.done)
        if self._rich is not None:
            self._rich.update(self._task, total=self.total)

    def rewind(self, done: int) -> None:
        """Set the setting-epochs done back to ``done`` (a group that failed and runs
        again one by one)."""
        if self._rich is not None:
            self._rich.update(self._task, completed=done)
        self.done = done

    def runs(self, n: int = 1, *, epochs: int = 0, label: str = "") -> None:
        """``n`` runs finished (their records written); ``epochs`` setting-epochs with them
        (one-by-one runs, whose epochs are counted when they finish)."""
        self.done_runs += n
        self.done += epochs
        if self._rich is not None:
            self._rich.update(self._task, advance=epochs, runs=self._runs())
        elif label:
            self._line(label)

    def close(self) -> None:
        """Stop the bar (leaves its last state on a terminal)."""
        if self._rich is not None:
            self._rich.stop()
