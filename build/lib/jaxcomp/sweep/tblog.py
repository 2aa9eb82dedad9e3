"""Optional TensorBoard event files, one directory per run (needs ``tensorboardX``,
the ``tensorboard`` extra; imported lazily).

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()) / "run"
    >>> write_run(d, {"history": [{"epoch": 1, "train_loss": 0.5}],
    ...               "metrics": {"test_accuracy": 0.9}, "setting": {"seed": 0}})
    >>> any(p.name.startswith("events.out.tfevents") for p in d.iterdir())
    True
"""

from __future__ import annotations

import os
from typing import Any

from jaxcomp.core.errors import ConfigError


def require_tensorboard() -> Any:
    """The ``tensorboardX`` module, or a ConfigError saying how to install it."""
    try:
        import tensorboardX
    except ImportError:
        raise ConfigError("--tensorboard needs tensorboardX: pip install 'jaxcomp[tensorboard]' "
                          "(or pip install tensorboardX)") from None
    return tensorboardX


def write_run(directory: str | os.PathLike, record: dict[str, Any]) -> None:
    """Write a run's per-epoch history and final numeric metrics as scalars."""
    tbx = require_tensorboard()
    writer = tbx.SummaryWriter(str(directory))
    try:
        history = record.get("history") or []
        for h in history:
            for k, v in h.items():
                if k != "epoch" and isinstance(v, int | float):
                    writer.add_scalar(f"train/{k}", v, h["epoch"])
        final_step = history[-1]["epoch"] if history else 0
        for k, v in (record.get("metrics") or {}).items():
            if isinstance(v, int | float) and not isinstance(v, bool):
                writer.add_scalar(f"final/{k}", v, final_step)
        text = ", ".join(f"{k}={v}" for k, v in (record.get("setting") or {}).items())
        if text:
            writer.add_text("setting", text, 0)
    finally:
        writer.close()
