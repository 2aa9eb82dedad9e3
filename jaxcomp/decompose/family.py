"""The ``decompose`` experiment family: after training, factorize the chosen
layers, evaluate, fine-tune with the normal training loop, and ledger
parameters, FLOPs and measured forward time before and after; the factorized
model's bytes and FLOPs are the run's ``stored_bytes`` (``"fp32 factors"``) and
``flops_effective`` (``"factorized layers"``).

Config keys (``cfg.decompose``): ``method`` (``none|svd|tucker2|cp``), ``rank``
(``0`` = choose by ``selection``), ``selection`` (``fixed|energy|vbmf|budget``),
``energy``, ``budget`` (kept fraction of the selected layers' weights), ``where``
(rules over kernel paths; empty = every kernel the method applies to), ``n_iter``
(``0`` = default sweeps), ``finetune_epochs``, ``finetune_lr`` (``0`` = train's),
``measure_batch`` (batch of the timed forward pass; ``0`` = skip timing),
``choose_by_speed`` (keep a layer factorized only if that is faster here).

Example:
    >>> from jaxcomp.decompose.family import default_config
    >>> c = default_config()
    >>> c.method, c.finetune_epochs
    ('none', 1)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from jaxcomp.core.errors import ConfigError
from jaxcomp.decompose import accounting as acc
from jaxcomp.decompose.blas import one_blas_thread
from jaxcomp.decompose.factorize import factorize, factorized_model
from jaxcomp.decompose.plan import make_spec
from jaxcomp.experiment.ledger import ensure_defaults, forward_flops, tree_bytes
from jaxcomp.experiment.plan import Plan
from jaxcomp.experiment.sections.decompose import (  # noqa: F401  (the section, public here)
    METHODS,
    VECTOR_KEYS,
    default_config,
    validate,
)


def plan(cfg: ml_collections.ConfigDict, ctx: Any) -> Plan:
    """Factorization acts after training; the plan checks the model can take it."""
    validate(cfg)
    import flax.linen as nn

    if not isinstance(ctx.model.module, nn.Module):
        raise ConfigError(f"decompose: model {ctx.model.name!r} is not a linen model; the "
                          "family factorizes linen models (NNX: see factorize_nnx)")
    return Plan("decompose", after_train=lambda c: after_train(cfg, c))


def _spec(cfg, params):
    where = tuple(cfg.where) or None
    selection = "fixed" if cfg.rank else cfg.selection
    with one_blas_thread():
        return make_spec(params, cfg.method, rank=int(cfg.rank), selection=selection,
                         energy=cfg.energy, budget=cfg.budget, where=where)


def after_train(cfg: ml_collections.ConfigDict, ctx: Any) -> None:
    """Factorize the trained model, evaluate, fine-tune, and ledger the result."""
    from jaxcomp.train import fit
    from jaxcomp.train.loop import init_state
    from jaxcomp.train.step import evaluate

    state = ctx.fit_result.state
    params = ctx.transform.apply(state.params, state.comp_state) if ctx.transform \
        else state.params
    ms = state.model_state
    ds = ctx.dataset
    spec = _spec(cfg, params)
    key = jax.random.key(ctx.config.seed * 1000 + cfg.seed)
    with one_blas_thread():
        f = factorize(ctx.model, params, spec, key=key, n_iter=cfg.n_iter or None)
    shapes = acc.layer_shapes(ctx.model, params, ms, ds.input_shape)
    fmodel, fparams = f.model, f.params
    if cfg.choose_by_speed and cfg.measure_batch:
        timings = acc.layer_timings(shapes, fparams, spec, batch=cfg.measure_batch)
        choice = acc.choose_forms(timings)
        fparams, spec = acc.apply_choice(fparams, spec, choice)
        fmodel = factorized_model(ctx.model, spec)
        ctx.metrics["decompose_layer_choice"] = choice
        ctx.ledger["decompose_layer_timings"] = timings
    ev = evaluate(fmodel, fparams, ms, ds.x_test, ds.y_test,
                  batch_size=ctx.config.train.eval_batch_size)
    ctx.metrics["decompose_accuracy_before_finetune"] = ev["accuracy"]
    ctx.metrics["decompose_accuracy_dense"] = ctx.metrics.get("test_accuracy")
    if cfg.finetune_epochs:
        tx = ctx.make_optimizer(cfg.finetune_lr or None)
        # the train step donates its state: give it copies (the dense params share biases)
        fparams, ms = jax.tree.map(jnp.copy, (fparams, ms))
        st = init_state(fmodel, ds, tx, seed=ctx.config.seed, params=fparams, model_state=ms)
        res = fit(fmodel, ds, tx, epochs=int(cfg.finetune_epochs),
                  batch_size=ctx.config.train.batch_size, seed=ctx.config.seed + 1,
                  state=st, progress=ctx.progress)
        fparams, ms = res.state.params, res.state.model_state
        ctx.metrics["decompose_accuracy_after_finetune"] = res.final.get("test_accuracy")
    rows = acc.ledger(shapes, spec)
    ensure_defaults(ctx.ledger)
    ctx.ledger.update({"stored_bytes": tree_bytes(fparams),
                       "encoding": "fp32 factors" if spec else "fp32 dense",
                       "flops_effective": forward_flops(fmodel, fparams, ms, ds.input_shape),
                       "flops_counting": "factorized layers" if spec else "dense"})
    ctx.ledger["decompose_layers"] = rows
    ctx.ledger["decompose_totals"] = acc.totals(rows)
    ctx.ledger["decompose_spec"] = spec
    if cfg.measure_batch:
        x = jnp.asarray(ds.x_test[: cfg.measure_batch])
        dense_fn = jax.jit(lambda p, s, x: ctx.model.apply(p, s, x)[0])
        fact_fn = jax.jit(lambda p, s, x: fmodel.apply(p, s, x)[0])
        t = acc.time_interleaved({"dense": lambda: dense_fn(params, state.model_state, x),
                                  "factorized": lambda: fact_fn(fparams, ms, x)}, repeats=7)
        ctx.ledger["decompose_forward_seconds"] = t
    ctx.artifacts["decompose"] = {"model": fmodel, "params": fparams, "model_state": ms,
                                  "spec": spec}
