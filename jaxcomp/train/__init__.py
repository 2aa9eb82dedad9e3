"""Training: state, jitted steps with an optional compression transform,
evaluation, the ``fit`` loop, orbax checkpoints.

Names are imported on first use, so the engine (``jaxcomp.engine``) and this
package can build on each other's modules.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "Checkpointer": "jaxcomp.train.checkpoint",
    "FitResult": "jaxcomp.train.loop", "fit": "jaxcomp.train.loop",
    "init_state": "jaxcomp.train.loop",
    "correct": "jaxcomp.train.losses", "cross_entropy": "jaxcomp.train.losses",
    "per_example_nll": "jaxcomp.train.losses",
    "TrainState": "jaxcomp.train.state", "create_state": "jaxcomp.train.state",
    "projected": "jaxcomp.train.state",
    "default_loss": "jaxcomp.train.step", "eval_step_fn": "jaxcomp.train.step",
    "evaluate": "jaxcomp.train.step", "make_train_step": "jaxcomp.train.step",
    "train_step_fn": "jaxcomp.train.step",
    "make_epoch_scan": "jaxcomp.engine.programs",
}


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name]), name)
    raise AttributeError(f"module 'jaxcomp.train' has no attribute {name!r}")


__all__ = sorted(_NAMES)
