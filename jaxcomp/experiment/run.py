"""Run one experiment from a config: data → model → compression families →
train → post-training steps → one result record.

Example:
    >>> from jaxcomp.experiment import base_config, run_experiment
    >>> cfg = base_config()
    >>> cfg.data.name = "digits"; cfg.model.name = "mlp"; cfg.train.epochs = 2
    >>> record = run_experiment(cfg, progress=False)
    >>> 0.0 <= record["metrics"]["test_accuracy"] <= 1.0
    True
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any

import jax
import ml_collections
import numpy as np
import optax

from jaxcomp.core.errors import ConfigError, check_choice, check_range
from jaxcomp.core.transform import Transform, named_chain
from jaxcomp.data import Dataset, load_dataset, split_validation
from jaxcomp.experiment.ledger import analytical_ledger
from jaxcomp.experiment.plan import after_training, apply_plans
from jaxcomp.experiment.validate import OPTIMIZERS, validate_config
from jaxcomp.flax.model import Model
from jaxcomp.models import get_model
from jaxcomp.train import FitResult, fit
from jaxcomp.train.step import LossFn


@dataclasses.dataclass
class RunContext:
    """What the families read and change while an experiment runs."""

    config: ml_collections.ConfigDict
    dataset: Dataset
    model: Model
    transforms: list[tuple[str, Transform]] = dataclasses.field(default_factory=list)
    loss_fn: LossFn | None = None
    cached: dict[str, Any] | None = None
    extra_batch: Any = None
    loss_state: Any = None
    fit_result: FitResult | None = None
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    ledger: dict[str, Any] = dataclasses.field(default_factory=dict)
    artifacts: dict[str, Any] = dataclasses.field(default_factory=dict)
    progress: bool = False
    out_dir: str | None = None
    mesh: Any = None
    plans: list[Any] = dataclasses.field(default_factory=list)

    @property
    def transform(self) -> Transform | None:
        return named_chain(*self.transforms) if self.transforms else None

    def make_optimizer(self, learning_rate: float | None = None) -> optax.GradientTransformation:
        return make_optimizer(self.config.train, learning_rate)

    def fit(self, **overrides: Any) -> FitResult:
        """Train with the config's settings; keyword arguments override ``fit``'s."""
        t = self.config.train
        kw = dict(epochs=t.epochs, batch_size=t.batch_size, seed=self.config.seed,
                  transform=self.transform, loss_fn=self.loss_fn, progress=self.progress,
                  scan={"auto": None, "on": True, "off": False}[t.scan],
                  extra_batch=self.extra_batch, loss_state=self.loss_state,
                  cached=self.cached)
        kw.update(overrides)
        tx = kw.pop("tx", None) or self.make_optimizer()
        if self.mesh is not None and self.mesh.size > 1:
            if kw.get("extra_batch") is None:
                from jaxcomp.distributed.data_parallel import fit_data_parallel

                return fit_data_parallel(self.model, self.dataset, tx, mesh=self.mesh, **kw)
            _note_once("a family feeds per-batch data from Python (extra_batch), which is "
                       "not split over a mesh: this run trains on one device per process "
                       "(give per-example arrays as ctx.cached instead)")
        return fit(self.model, self.dataset, tx, **kw)


_NOTED: set[str] = set()


def _note_once(msg: str) -> None:
    if msg not in _NOTED and jax.process_index() == 0:
        _NOTED.add(msg)
        print(f"note: {msg}", file=sys.stderr)


def make_optimizer(train_cfg: ml_collections.ConfigDict,
                   learning_rate: float | None = None) -> optax.GradientTransformation:
    """The optimizer named by ``train.optimizer`` (adam, adamw, sgd, momentum).

    The learning rate is held in the optimizer state (``optax.inject_hyperparams``),
    not baked into the program, so a sweep over ``train.learning_rate`` trains its
    settings in one vmapped program (it is one of the runner's vector keys).

    Example:
        >>> from jaxcomp.experiment import base_config
        >>> import jax.numpy as jnp
        >>> tx = make_optimizer(base_config().train, learning_rate=0.5)
        >>> float(tx.init({"w": jnp.zeros(2)}).hyperparams["learning_rate"])
        0.5
    """
    name = train_cfg.optimizer
    check_choice("train.optimizer", name, OPTIMIZERS)
    lr = train_cfg.learning_rate if learning_rate is None else learning_rate
    check_range("train.learning_rate", lr, 0.0, None, lo_open=True)
    wd = train_cfg.weight_decay
    check_range("train.weight_decay", wd, 0.0, None)
    momentum = train_cfg.momentum

    def build(learning_rate):
        if name == "adamw":
            return optax.adamw(learning_rate, weight_decay=wd)
        if name == "adam":
            tx = optax.adam(learning_rate)
        elif name == "sgd":
            tx = optax.sgd(learning_rate)
        else:
            tx = optax.sgd(learning_rate, momentum=momentum)
        return optax.chain(optax.add_decayed_weights(wd), tx) if wd else tx

    return optax.inject_hyperparams(build)(learning_rate=lr)


def load_data(cfg: ml_collections.ConfigDict) -> Dataset:
    """The dataset named by ``data.name``, optionally truncated and split."""
    check_range("data.limit_train", cfg.data.limit_train, 0, None)
    check_range("data.limit_test", cfg.data.limit_test, 0, None)
    kwargs = {}
    if cfg.data.name == "fashion_mnist" and cfg.data.data_dir:
        kwargs["data_dir"] = cfg.data.data_dir
    ds = load_dataset(cfg.data.name, **kwargs)
    if cfg.data.limit_train:
        ds = dataclasses.replace(ds, x_train=ds.x_train[:cfg.data.limit_train],
                                 y_train=ds.y_train[:cfg.data.limit_train])
    if cfg.data.limit_test:
        ds = dataclasses.replace(ds, x_test=ds.x_test[:cfg.data.limit_test],
                                 y_test=ds.y_test[:cfg.data.limit_test])
    return split_validation(ds, cfg.data.val_fraction, seed=cfg.seed)


def build_model(cfg: ml_collections.ConfigDict, ds: Dataset) -> Model:
    """The model named by ``model.name`` with any extra keys of ``cfg.model`` as arguments."""
    extra = {k: v for k, v in cfg.model.items() if k != "name"}
    try:
        return get_model(cfg.model.name, input_shape=ds.input_shape,
                         num_classes=ds.num_classes, **extra)
    except TypeError as e:
        raise ConfigError(f"model: {e}") from None


def validate(cfg: ml_collections.ConfigDict) -> None:
    """Check every key of the config before anything runs: the base keys and every
    family's, switched on or off (see :mod:`jaxcomp.experiment.validate`)."""
    validate_config(cfg)


def run_experiment(cfg: ml_collections.ConfigDict, *, progress: bool = False,
                   out_dir: str | None = None, dataset: Dataset | None = None,
                   mesh: Any = None) -> dict[str, Any]:
    """Run the experiment described by ``cfg`` and return its result record.

    With a ``mesh`` of more than one device (``jaxcomp.distributed.make_mesh``),
    training is data-parallel over its ``data`` axis.
    """
    validate(cfg)
    t0 = time.perf_counter()
    ds = dataset if dataset is not None else load_data(cfg)
    ctx = RunContext(cfg, ds, build_model(cfg, ds), progress=progress, out_dir=out_dir,
                     mesh=mesh)
    apply_plans(cfg, ctx)
    res = ctx.fit(checkpoint_dir=f"{out_dir}/checkpoints"
                  if out_dir and cfg.train.checkpoint else None)
    record = finish_run(ctx, res)
    record["metrics"]["total_seconds"] = time.perf_counter() - t0
    return {**record, "seed": cfg.seed}


def finish_run(ctx: RunContext, res: FitResult, *, flops: float | None = None
               ) -> dict[str, Any]:
    """After training: the run's metrics, its ledger (analytical, then each plan's
    post-training step: quantization, surgery, factorization, export) and its
    record ``{"config", "metrics", "ledger"}``. One run and each member of a
    vectorized sweep group end here alike.

    Args:
      res: the run's training result (``train_seconds`` is the run's share).
      flops: the dense forward FLOPs when already known (settings of one model).
    """
    ctx.fit_result = res
    ctx.metrics.update({k: v for k, v in res.final.items() if k != "epoch"})
    ctx.metrics["diverged"] = res.diverged
    if res.diverged:
        ctx.metrics["diverged_step"] = res.diverged_step
    else:
        state = res.state
        eff = ctx.transform.apply(state.params, state.comp_state) if ctx.transform \
            else state.params
        ctx.ledger.update(analytical_ledger(ctx.model, eff, state.model_state,
                                            ctx.dataset.input_shape, flops=flops))
        after_training(ctx)
    ctx.metrics["train_seconds"] = res.train_seconds
    return {"config": ctx.config.to_dict(), "metrics": _plain(ctx.metrics),
            "ledger": _plain(ctx.ledger)}


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, jax.Array | np.ndarray | np.generic):
            v = np.asarray(v).tolist()
        out[k] = v
    return out
