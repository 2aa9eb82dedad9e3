"""The training engine: one epoch body, one step, one eval loop and one epoch
loop for a single run, a vectorized sweep (a stacked settings axis) and
data-parallel or multi-host training (a device mesh). ``jaxcomp.train.fit``,
``jaxcomp.distributed`` and ``jaxcomp sweep`` are thin calls into it.

Its Python API trains seeds or settings of your own model in one compiled
program (see ``docs/engine.md``).
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "FitResult": "loop", "check_schedule": "loop", "epoch_order": "loop", "run": "loop",
    "Programs": "programs", "epoch_body": "programs", "shared_leaves": "programs",
    "with_augment": "programs", "evaluate_on_mesh": "mesh", "mesh_programs": "mesh",
    "eval_totals": "evaluate", "evaluate_state": "evaluate", "padded_batches": "evaluate",
    "train_settings": "settings", "stack": "settings", "unstack": "settings",
}


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        return getattr(importlib.import_module(f"jaxcomp.engine.{_NAMES[name]}"), name)
    raise AttributeError(f"module 'jaxcomp.engine' has no attribute {name!r}")


__all__ = sorted(_NAMES)
