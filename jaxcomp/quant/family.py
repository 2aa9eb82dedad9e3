"""The quantization family for experiment configs (``cfg.quant``).

``method``: ``"none"``, ``"ptq"`` (round-to-nearest after training),
``"adaround"`` (learned rounding after training) or ``"qat"`` (fake-quant
in the train step via the transform; activation fake-quant via the model
wrapper). After training, every method reports ``quant_test_accuracy`` and
the integer export's size in the ledger (``int_bytes``: pruned kernels as a bitmask
plus their non-zero codes where that is smaller; ``int_bytes_dense``: every code
stored; ``fp32_bytes``); ``int_bytes`` is also the run's ``stored_bytes``, with
its ``encoding`` named (e.g. ``"int4 codes + bitmask"``).

Sweeps: the weight bit width lives in the QAT transform's state as an array,
so ``bits`` is a :data:`VECTOR_KEYS` entry (settings differing only in
``bits`` share one compiled program).

Example:
    >>> from jaxcomp.experiment import base_config, run_experiment
    >>> cfg = base_config()
    >>> cfg.data.name = "digits"; cfg.model.name = "mlp"; cfg.train.epochs = 1
    >>> cfg.quant.method = "ptq"; cfg.quant.act_bits = 8; cfg.quant.calib_batches = 2
    >>> rec = run_experiment(cfg)
    >>> 0.0 <= rec["metrics"]["quant_test_accuracy"] <= 1.0, rec["ledger"]["int_bytes"] > 0
    (True, True)
"""

from __future__ import annotations

from typing import Any

import jax
import ml_collections
import numpy as np

from jaxcomp.core.errors import ConfigError
from jaxcomp.experiment.ledger import ensure_defaults
from jaxcomp.experiment.plan import Plan
from jaxcomp.experiment.sections.quant import (  # noqa: F401  (the section, public here)
    METHODS,
    VECTOR_KEYS,
    default_config,
    validate,
)


def _weight_bits(cfg, params) -> Any:
    if not cfg.keep_first_last_8bit:
        return cfg.bits
    from jaxcomp.quant.ptq import layer_paths

    layers = layer_paths(params)
    rules = [(f"{layers[0]}/kernel", 8), (f"{layers[-1]}/kernel", 8), (".*", cfg.bits)]
    return rules


def _act_rules(cfg, params):
    from jaxcomp.quant.ptq import layer_paths, layer_rules

    if cfg.act_where:
        return [(r, cfg.act_bits) if isinstance(r, str) and not r.startswith("!") else r
                for r in cfg.act_where]
    keep = ()
    if cfg.keep_first_last_8bit:
        lp = layer_paths(params)
        keep = (lp[0], lp[-1])
    return layer_rules(params, cfg.act_bits, keep_8bit=keep)


def _where(cfg):
    return list(cfg.where) if cfg.where else None


def plan(cfg: ml_collections.ConfigDict, ctx: Any) -> Plan:
    """QAT: the weight fake-quant transform (and the activation-quantizing model);
    PTQ/AdaRound act after training only."""
    validate(cfg)
    after = lambda c: after_train(cfg, c)  # noqa: E731
    if cfg.method != "qat":
        return Plan("quant", after_train=after)
    from jaxcomp.quant.act import act_quant
    from jaxcomp.quant.transform import weight_quant

    x0 = ctx.dataset.x_train[:1]
    params, _ = ctx.model.init(jax.random.key(0), x0)
    wq = weight_quant(_weight_bits(cfg, params), where=_where(cfg), per_channel=cfg.per_channel,
                      symmetric=cfg.symmetric, observer=cfg.weight_observer)
    if not cfg.act_bits:
        return Plan("quant", transform=wq, after_train=after)
    aq = act_quant(ctx.model, _act_rules(cfg, params), cfg.act_bits)
    return Plan("quant", transform=wq, model=aq.model, artifacts={"quant_act": aq},
                after_train=after)


def _calib(cfg, ctx) -> list[Any]:
    x = ctx.dataset.x_train
    n = cfg.calib_batches * cfg.calib_batch_size
    return [x[i:i + cfg.calib_batch_size] for i in range(0, min(n, len(x)),
                                                          cfg.calib_batch_size)]


def after_train(cfg: ml_collections.ConfigDict, ctx: Any) -> None:
    """Quantize (PTQ/AdaRound), evaluate, export; add metrics and ledger entries."""
    from jaxcomp.quant.export import export_int, int_bytes
    from jaxcomp.quant.sparse_codes import sparsify
    from jaxcomp.train import evaluate

    ensure_defaults(ctx.ledger)
    ds = ctx.dataset
    state = ctx.fit_result.state
    others = [(n, t) for n, t in ctx.transforms if n != "quant"]
    params = state.params
    if others:
        from jaxcomp.core.transform import named_chain

        sub = named_chain(*others)
        comp = {n: state.comp_state[n] for n, _ in others}
        params = sub.apply(params, comp)
    eval_bs = ctx.config.train.eval_batch_size
    if cfg.method == "qat":
        ctx.metrics["quant_test_accuracy"] = ctx.metrics.get("test_accuracy")
        float_params = params
    else:
        from jaxcomp.quant.ptq import ptq

        calib = _calib(cfg, ctx)
        base_model = ctx.model
        weight_params = None
        model_state = state.model_state
        if cfg.method == "adaround":
            from jaxcomp.flax.modules import batch_stats
            from jaxcomp.quant.adaround import adaround
            from jaxcomp.quant.bnfold import fold_batchnorm

            if cfg.fold_bn and batch_stats(model_state):
                f = fold_batchnorm(base_model, params, model_state, calib[0])
                base_model, params, model_state = f.model, f.params, {}
            if cfg.keep_first_last_8bit or cfg.where:
                raise ConfigError("quant.method='adaround' quantizes every layer at quant.bits;"
                                  " unset quant.where / quant.keep_first_last_8bit")
            weight_params = adaround(base_model, params, model_state,
                                     np.concatenate(calib), bits=cfg.bits,
                                     iters=cfg.adaround_iters, reg=cfg.adaround_reg,
                                     key=jax.random.key(ctx.config.seed),
                                     per_channel=cfg.per_channel)
        q = ptq(base_model, params, model_state, calib, bits=_weight_bits(cfg, params),
                act_bits=cfg.act_bits, per_channel=cfg.per_channel, symmetric=cfg.symmetric,
                observer=cfg.observer, weight_observer=cfg.weight_observer,
                where=_where(cfg), act_rules=_act_rules(cfg, params) if cfg.act_bits else None,
                fold_bn=cfg.fold_bn, weight_params=weight_params)
        ev = evaluate(q.model, q.params, q.model_state, ds.x_test, ds.y_test,
                      batch_size=eval_bs)
        ctx.metrics["quant_test_accuracy"] = ev["accuracy"]
        ctx.metrics["quant_test_nll"] = ev["nll"]
        ctx.artifacts["quant_ptq"] = q
        float_params = q.float_params
    if cfg.export and cfg.bits <= 8:
        qt = export_int(float_params, _weight_bits(cfg, float_params), where=_where(cfg),
                        per_channel=cfg.per_channel, symmetric=cfg.symmetric)
        ctx.ledger["int_bytes_dense"] = int_bytes(qt)
        # pruned kernels keep only their non-zero codes (+ a bitmask) where that is
        # smaller; the codes, and so the integer model, are the same
        qt = sparsify(qt)
        ctx.ledger["int_bytes"] = int_bytes(qt)
        ctx.ledger["fp32_bytes"] = int(sum(np.asarray(x).nbytes
                                           for x in jax.tree.leaves(float_params)))
        ctx.artifacts["quant_export"] = qt
        if "decompose_spec" not in ctx.ledger:  # else the stored model is the factorized one
            ctx.ledger.update({"stored_bytes": ctx.ledger["int_bytes"],
                               "encoding": export_encoding(qt)})


def export_encoding(qtree: Any) -> str:
    """The name of an integer export's encoding: its code widths, ``+ bitmask`` when
    some kernel keeps only its non-zero codes (float leaves, e.g. biases and
    scales, stay fp32).

    Example:
        >>> from jaxcomp.quant.export import export_int
        >>> from jaxcomp.quant.sparse_codes import sparsify
        >>> w = np.zeros((64, 8), np.float32); w[::10] = 1.0
        >>> export_encoding(sparsify(export_int({"k": w, "b": np.ones(8)}, 4, where=["k"])))
        'int4 codes + bitmask'
    """
    from jaxcomp.quant.export import is_qleaf, leaf_bits
    from jaxcomp.quant.sparse_codes import is_sparse

    bits: set[int] = set()
    sparse = False

    def walk(node: Any) -> None:
        nonlocal sparse
        if is_qleaf(node):
            bits.add(leaf_bits(node))
            sparse = sparse or is_sparse(node)
        elif isinstance(node, dict):
            for v in node.values():
                walk(v)

    walk(qtree)
    if not bits:
        return "fp32 dense"
    return "/".join(f"int{b}" for b in sorted(bits)) + " codes" + (" + bitmask" if sparse
                                                                   else "")
