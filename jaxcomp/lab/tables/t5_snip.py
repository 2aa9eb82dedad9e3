"""T5 — SNIP (Lee et al. 2019): pruning at initialization vs uniform random pruning.

Settings come from ``tables/configs/t5_snip.py``. Masks are computed once at
initialization (SNIP: global top-k of |g·w| on one batch; random: each kernel
at the same sparsity) and held fixed while training; every run of a seed uses
the same initial weights, data order and epochs, and one compiled epoch.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp

from jaxcomp.experiment.paper_table import Claim, TableResult, mean_std
from jaxcomp.lab.tables.lenet import LeNet300Kit
from jaxcomp.prune import global_masks, layerwise_masks, snip_scores
from jaxcomp.prune.recipes import PruneTrainer, kept_fraction
from jaxcomp.train import cross_entropy

TABLE = "T5"
TITLE = "SNIP: single-shot network pruning at initialization (LeNet-300-100)"
CONFIG = "t5_snip"
KERNELS = ("Dense_0/kernel", "Dense_1/kernel", "Dense_2/kernel")


_KIT = LeNet300Kit(TABLE, CONFIG)
load_config, _log = _KIT.load_config, _KIT.log


def snip_masks(model, params, x, y, sparsity):
    """SNIP: one global threshold on |∂L/∂w · w| of the kernels at initialization."""
    def loss(p):
        return cross_entropy(model.apply(p, {}, x, train=False)[0], y)

    s = snip_scores(lambda p: loss(p), params)
    return global_masks({k: s[k.split("/")[0]]["kernel"] for k in KERNELS}, sparsity)


def random_masks(key, params, sparsity):
    """Uniform random pruning: every kernel at ``sparsity``, exact counts, explicit key."""
    keys = jax.random.split(key, len(KERNELS))
    scores = {k: jax.random.uniform(kk, params[k.split("/")[0]]["kernel"].shape)
              for k, kk in zip(KERNELS, keys, strict=True)}
    return layerwise_masks(scores, sparsity)


def run(quick: bool = False) -> TableResult:
    cfg = load_config(quick)
    t0 = time.time()
    ds, model = _KIT.data_and_model(cfg)
    tr = PruneTrainer(model, ds, batch_size=cfg.batch_size)
    acc = {"dense": []}
    for s in cfg.sparsities:
        acc[f"snip{s}"], acc[f"random{s}"] = [], []
    rows, kept = [], {}
    for seed in cfg.seeds:
        p = tr.init_params(seed)
        st = tr.train(tr.state(p, sparsity=0.0, lr=cfg.learning_rate, seed=seed),
                      epochs=cfg.epochs, seed=seed)
        acc["dense"].append(tr.evaluate(st))
        rows.append({"seed": seed, "run": "dense", "sparsity": 0.0, "accuracy": acc["dense"][-1]})
        # the sensitivity batch: the first snip_batch examples of the seed's first epoch order
        idx = jax.random.permutation(jax.random.key(seed), len(ds.x_train))[:cfg.snip_batch]
        xb, yb = jnp.asarray(ds.x_train)[idx], jnp.asarray(ds.y_train)[idx]
        for s in cfg.sparsities:
            for name, masks in (("snip", snip_masks(model, p, xb, yb, s)),
                                ("random", random_masks(jax.random.key(1000 + seed), p, s))):
                st = tr.train(tr.state_with_masks(p, masks, lr=cfg.learning_rate, seed=seed),
                              epochs=cfg.epochs, seed=seed)
                a = tr.evaluate(st)
                acc[f"{name}{s}"].append(a)
                rows.append({"seed": seed, "run": name, "sparsity": round(tr.sparsity(st), 4),
                             "accuracy": a})
                if name == "snip":
                    kept[s] = kept_fraction(masks)
        _log(f"seed {seed}: " + ", ".join(f"{k} {v[-1]:.4f}" for k, v in acc.items()))
    m = {k: mean_std(v) for k, v in acc.items()}
    s95, s98 = cfg.sparsities
    gap = {s: 100 * (m[f"snip{s}"]["mean"] - m[f"random{s}"]["mean"]) for s in cfg.sparsities}
    claims = [
        Claim("a", f"dense − SNIP {s95:.0%} ≤ 1.5 pt",
              100 * (m["dense"]["mean"] - m[f"snip{s95}"]["mean"]), 1.5, "<="),
        Claim("b", f"SNIP − uniform random ≥ 1 pt at {s95:.0%}", gap[s95], 1.0, ">="),
        Claim("b98", f"SNIP − uniform random at {s98:.0%} (reported, not gating)", gap[s98],
              1.0, ">=", gating=False),
    ]
    ours = {"dense_acc": m["dense"], "seconds": round(time.time() - t0, 1),
            **{f"snip_{s:.0%}_acc": m[f"snip{s}"] for s in cfg.sparsities},
            **{f"random_{s:.0%}_acc": m[f"random{s}"] for s in cfg.sparsities},
            **{f"snip_{s:.0%}_kept_per_layer": {k: round(v, 4) for k, v in kept[s].items()}
               for s in kept}}
    paper = {"dense_error_pct": 1.7, "snip_95%_error_pct": 1.6, "snip_98%_error_pct": 2.4}
    passed = all(c.passed for c in claims if c.gating)
    d95 = 100 * (m["dense"]["mean"] - m[f"snip{s95}"]["mean"])
    notes = []
    if not claims[0].passed:
        notes.append(
            f"Claim a fails: SNIP's {s95:.0%}-sparse net, its masks fixed at initialization "
            f"and trained from scratch for {cfg.epochs} epochs, trails dense by {d95:.2f} pt "
            "on Fashion-MNIST (harder than the paper's MNIST, where the 95% net matched the "
            "reference). Uniform random pruning trails by "
            f"{100 * (m['dense']['mean'] - m[f'random{s95}']['mean']):.2f} pt, so SNIP's "
            f"advantage at {s95:.0%} is {gap[s95]:.2f} pt and grows to {gap[s98]:.2f} pt at "
            f"{s98:.0%}, where uniform random keeps only {1 - s98:.0%} of the 100×10 output "
            "layer while SNIP keeps "
            f"{kept[s98]['Dense_2/kernel']:.0%} of it. Pruning during training recovers far "
            "more (T3: gradual 90% matches dense). Reported as measured; thresholds unchanged.")
    elif passed:
        notes.append("All gating claims pass.")
    if not claims[1].passed:
        notes.append(
            f"Claim b fails: SNIP beats uniform random by {gap[s95]:.2f} pt at {s95:.0%} "
            f"(threshold 1 pt; std over {len(cfg.seeds)} seeds: SNIP "
            f"{100 * m[f'snip{s95}']['std']:.2f} pt, random "
            f"{100 * m[f'random{s95}']['std']:.2f} pt). At {s98:.0%} (reported, not gating) "
            f"the gap is {gap[s98]:.2f} pt. Reported as measured; thresholds unchanged.")
    analysis = " ".join(notes)
    return TableResult(
        TABLE, TITLE, paper, ours, claims,
        deviations=["Fashion-MNIST instead of MNIST; Adam 1e-3 for 12 epochs instead of the "
                    "paper's SGD-momentum schedule.",
                    "Variance-scaling (LeCun normal) init from Flax instead of the paper's "
                    "variance-scaling variant; biases are never pruned."],
        analysis=analysis, quick=quick, rows=rows)
