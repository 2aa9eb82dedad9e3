"""Training: state, jitted steps with an optional compression transform,
evaluation, the ``fit`` loop, orbax checkpoints."""

from jaxcomp.train.checkpoint import Checkpointer
from jaxcomp.train.loop import FitResult, fit, init_state
from jaxcomp.train.losses import correct, cross_entropy, per_example_nll
from jaxcomp.train.state import TrainState, create_state
from jaxcomp.train.step import (
    default_loss,
    eval_step_fn,
    evaluate,
    make_epoch_scan,
    make_train_step,
    train_step_fn,
)

__all__ = [
    "Checkpointer", "FitResult", "TrainState", "correct", "create_state", "cross_entropy",
    "default_loss", "eval_step_fn", "evaluate", "fit", "init_state", "make_epoch_scan",
    "make_train_step", "per_example_nll", "train_step_fn",
]
