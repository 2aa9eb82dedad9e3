"""Shared helpers for benchmark scripts: interleaved timing and JSON result lines.

Every benchmark prints one JSON object per line on stdout and nothing else:
``{"name", "value", "unit", "target", "ok", ...}``.

Example:
    >>> emit("x_ratio", 0.5, "ratio", 1.0, ok=True)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable


def emit(name: str, value, unit: str, target, ok: bool | None = None, **extra) -> None:
    """Print one result line; ``ok`` defaults to ``value <= target`` for ratios."""
    if ok is None:
        ok = value is not None and target is not None and value <= target
    print(json.dumps({"name": name, "value": value, "unit": unit, "target": target,
                      "ok": bool(ok), **extra}), flush=True)


def interleaved(variants: dict[str, Callable[[], None]], repeats: int = 7
                ) -> dict[str, dict[str, float]]:
    """Run each variant once per round, ``repeats`` rounds, interleaved.

    Returns ``{name: {"wall": median seconds, "cpu": median process CPU seconds}}``.
    """
    walls: dict[str, list[float]] = {k: [] for k in variants}
    cpus: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            walls[name].append(time.perf_counter() - t0)
            cpus[name].append(time.process_time() - c0)
    return {k: {"wall": statistics.median(walls[k]), "cpu": statistics.median(cpus[k])}
            for k in variants}


def log(*args) -> None:
    """Diagnostics go to stderr so stdout stays JSON lines."""
    print(*args, file=sys.stderr, flush=True)
