"""The pruning family of experiment configs (``cfg.prune``).

``plan`` builds the pruner from the config: its state (masks, schedule, gate)
is the run's compression state (:func:`jaxcomp.prune.pruning_transform`), and
the experiment's optimizer is wrapped by the generic
:func:`jaxcomp.prune.masked_updates`, which reads the masks from it (pruned
weights stay exactly zero). ``after_train`` adds the per-leaf report, the sparsity of the
pruned leaves, the sparse bytes at rest (bitmask and relative-index CSR; the
smallest is ``stored_bytes``) and the effective FLOPs (``flops_sparse``: zero
weights skipped; ``flops_shrunk``: all-zero units removed) to the ledger.

Schedules: ``one_shot`` (prune once at ``begin``), ``gradual`` (Zhu & Gupta's
polynomial from 0 to ``sparsity`` over ``[begin, end]``, masks every
``frequency`` steps), ``iterative`` (``rounds`` equal prune steps over
``[begin, end]``). ``end = -1`` means 75% of the training steps. Methods
``set``/``rigl`` are dynamic sparse training at constant ``sparsity``.

The config section itself (defaults, ``validate``) lives in
:mod:`jaxcomp.experiment.sections.prune`, which imports no JAX.

Example:
    >>> cfg = default_config()
    >>> cfg.method, cfg.sparsity, cfg.allocation, cfg.schedule
    ('none', 0.9, 'layerwise', 'gradual')
"""

from __future__ import annotations

from typing import Any

import jax
import ml_collections
import optax

from jaxcomp.core import schedules
from jaxcomp.core.transform import Transform
from jaxcomp.experiment.ledger import ensure_defaults
from jaxcomp.experiment.plan import Plan
from jaxcomp.experiment.sections.prune import (  # noqa: F401  (the section, public here)
    VECTOR_KEYS,
    default_config,
    methods,
    validate,
)
from jaxcomp.prune import dst, storage
from jaxcomp.prune.optax_wrapper import get_masks
from jaxcomp.prune.pruner import pruner
from jaxcomp.prune.report import effective_flops, output_positions, sparsity_report
from jaxcomp.prune.state_transform import pruning_optimizer, pruning_transform


def total_steps(ctx: Any) -> int:
    t = ctx.config.train
    return int(t.epochs) * (len(ctx.dataset.x_train) // int(t.batch_size))


def build(cfg: ml_collections.ConfigDict, steps: int) -> Transform:
    """The pruner (or SET/RigL transform) a config describes, for ``steps`` training steps."""
    validate(cfg)
    begin = int(cfg.begin)
    end = int(cfg.end) if cfg.end != -1 else max(begin, int(0.75 * steps))
    where = list(cfg.where) if cfg.where else None
    if cfg.method in ("set", "rigl"):
        return dst.dynamic_sparse(cfg.method, cfg.sparsity, drop_fraction=cfg.drop_fraction,
                                  begin=begin, every=cfg.frequency, end=end,
                                  allocation=cfg.allocation, where=where)
    if cfg.schedule == "one_shot":
        sched = schedules.one_shot(cfg.sparsity, at=begin)
        gate = (begin, begin, 1)
    elif cfg.schedule == "gradual":
        # align end to the mask-update grid so the last update reaches the target exactly
        end = begin + max(1, (end - begin) // int(cfg.frequency)) * int(cfg.frequency)
        sched = schedules.polynomial(0.0, cfg.sparsity, begin, end, cfg.power, cfg.frequency)
        gate = (begin, end, cfg.frequency)
    else:
        every = max(1, (end - begin) // int(cfg.rounds))
        end = begin + every * int(cfg.rounds)
        sched = schedules.polynomial(0.0, cfg.sparsity, begin, end, 1.0, every)
        gate = (begin + every, end, every)
    return pruner(cfg.method, sched, allocation=cfg.allocation, structure=cfg.structure,
                  where=where, normalize=None if cfg.normalize == "none" else cfg.normalize,
                  n=cfg.n, m=cfg.m, axis=cfg.axis, block=tuple(cfg.block), gate=gate)


def plan(cfg: ml_collections.ConfigDict, ctx: Any) -> Plan:
    """Training prunes: the pruner's state is the compression state, and the run's
    optimizer is wrapped by :func:`~jaxcomp.prune.masked_updates`, which reads it."""
    p = build(cfg, total_steps(ctx))
    t = pruning_transform(p, seed=int(cfg.seed))

    def wrap(tx: optax.GradientTransformation) -> optax.GradientTransformation:
        return pruning_optimizer(tx, t)

    return Plan("prune", transform=t, optimizer=wrap, artifacts={"prune_transform": p},
                after_train=lambda c: after_train(cfg, c))


def _encoding(bm: int, csr: int, dense: int, index_bits: int) -> tuple[int, str]:
    """The smallest of the three fp32 storages and its name."""
    return min((bm, "fp32 bitmask-sparse"), (csr, f"fp32 CSR ({index_bits}-bit relative "
                                                 "indices)"), (dense, "fp32 dense"))


def after_train(cfg: ml_collections.ConfigDict, ctx: Any) -> None:
    """Ledger: sparsity of the pruned leaves, non-zeros, sparse bytes at rest
    (``stored_bytes``/``encoding``: the smallest of bitmask, CSR and dense fp32),
    effective FLOPs (``flops_shrunk``, ``flops_sparse`` = ``flops_effective``); per-leaf
    table in ``ctx.artifacts["prune_report"]``."""
    ensure_defaults(ctx.ledger)
    state = ctx.fit_result.state
    masks = get_masks(state.comp_state)
    n = sum(int(m.size) for m in masks.values())
    kept = sum(int(m.sum()) for m in masks.values())
    params = state.params
    bm = storage.tree_nbytes(storage.encode_tree(params, "bitmask"))
    csr = storage.tree_nbytes(storage.encode_tree(params, "relative",
                                                  index_bits=int(cfg.index_bits)))
    dense = 4 * sum(int(x.size) for x in jax.tree.leaves(params))
    ctx.ledger.update({"prune_sparsity": 1.0 - kept / max(n, 1), "prune_kept": kept,
                       "bytes_bitmask": bm, "bytes_csr": csr, "bytes": min(bm, csr, dense),
                       "ratio_bitmask": dense / bm, "ratio_csr": dense / csr})
    shape, ms = ctx.dataset.input_shape, state.model_state
    pos = output_positions(ctx.model, params, ms, shape)
    ctx.artifacts["prune_report"] = sparsity_report(params, positions=pos)
    if "decompose_spec" in ctx.ledger:  # the stored model is the factorized one
        return
    stored, encoding = _encoding(bm, csr, dense, int(cfg.index_bits))
    eff = effective_flops(ctx.model, params, ms, shape, dense_flops=ctx.ledger.get("flops"),
                          positions=pos)
    ctx.ledger.update({"stored_bytes": stored, "encoding": encoding, **eff,
                       "flops_effective": eff["flops_sparse"],
                       "flops_counting": "sparse (zero weights skipped, all-zero units "
                       "removed)"})
