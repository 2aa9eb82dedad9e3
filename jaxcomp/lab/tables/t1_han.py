"""T1 — Han et al. 2015: iterative magnitude pruning with retraining (LeNet-300-100).

Settings come from ``tables/configs/t1_han.py``. Per seed: a dense net with L2
regularization; then iterative prune → retrain (1/10 learning rate) toward
Han's per-layer keep ratios (12×) and toward the same ratios scaled to 5×;
the final 12× masks applied to the dense net without retraining; and a
global magnitude threshold at 12× (which layer keeps the most). Every run
shares one compiled epoch (learning rate, weight decay and masks are state).
"""

from __future__ import annotations

import time

import jax.numpy as jnp
import numpy as np

from jaxcomp.experiment.paper_table import Claim, TableResult, claims_summary, mean_std
from jaxcomp.lab.tables.lenet import LeNet300Kit
from jaxcomp.prune import apply_masks, global_masks, layerwise_masks
from jaxcomp.prune.recipes import PruneTrainer, kept_fraction

TABLE = "T1"
TITLE = "Learning both Weights and Connections: iterative prune → retrain (LeNet-300-100)"
CONFIG = "t1_han"


_KIT = LeNet300Kit(TABLE, CONFIG)
load_config, _log = _KIT.load_config, _KIT.log


def kernels(params):
    return {f"{k}/kernel": params[k]["kernel"] for k in sorted(params)}


def scaled_keep(keep: dict[str, float], sizes: dict[str, int], overall: float
                ) -> dict[str, float]:
    """Han's per-layer keep ratios scaled by one factor so the overall kept fraction is
    ``overall`` (each capped at 1)."""
    lo, hi = 0.0, 100.0
    for _ in range(60):
        c = (lo + hi) / 2
        tot = sum(min(1.0, c * keep[p]) * sizes[p] for p in keep) / sum(sizes.values())
        lo, hi = (c, hi) if tot < overall else (lo, c)
    return {p: min(1.0, lo * keep[p]) for p in keep}


def iterative(tr, cfg, dense_params, keep, seed):
    """Rounds of per-layer magnitude pruning toward ``keep``, each retrained at lr/10."""
    params, state = dense_params, None
    lr = cfg.learning_rate * cfg.retrain_lr_factor
    for r in range(1, cfg.rounds + 1):
        target = {p: 1.0 - k ** (r / cfg.rounds) for p, k in keep.items()}
        masks = layerwise_masks({p: jnp.abs(w) for p, w in kernels(params).items()}, target)
        state = tr.state_with_masks(params, masks, lr=lr, wd=cfg.weight_decay, seed=seed)
        state = tr.train(state, epochs=cfg.retrain_epochs, seed=seed,
                         first_epoch=cfg.epochs + (r - 1) * cfg.retrain_epochs)
        params = state.params
    return state


def run(quick: bool = False) -> TableResult:
    cfg = load_config(quick)
    t0 = time.time()
    ds, model = _KIT.data_and_model(cfg)
    tr = PruneTrainer(model, ds, batch_size=cfg.batch_size)
    keep12 = dict(cfg.keep)
    acc = {k: [] for k in ("dense", "x12", "x5", "x12_no_retrain")}
    rows, glob_kept, ratio = [], [], {}
    for seed in cfg.seeds:
        p0 = tr.init_params(seed)
        sizes = {p: int(w.size) for p, w in kernels(p0).items()}
        keep5 = scaled_keep(keep12, sizes, cfg.keep_5x)
        st = tr.train(tr.state(p0, sparsity=0.0, lr=cfg.learning_rate, wd=cfg.weight_decay,
                               seed=seed), epochs=cfg.epochs, seed=seed)
        dense = st.params
        acc["dense"].append(tr.evaluate(dense))
        for tag, keep in (("x12", keep12), ("x5", keep5)):
            s = iterative(tr, cfg, dense, keep, seed)
            acc[tag].append(tr.evaluate(s))
            m = tr.masks(s)
            kept = sum(int(v.sum()) for v in m.values()) / sum(sizes.values())
            ratio[tag] = 1.0 / kept
            rows.append({"seed": seed, "run": f"iterative {tag[1:]}x", "kept_pct": 100 * kept,
                         "accuracy": acc[tag][-1]})
            if tag == "x12":
                final12 = {p: np.asarray(v) for p, v in m.items()}
        nr = apply_masks(dense, final12)
        acc["x12_no_retrain"].append(tr.evaluate(nr))
        rows.append({"seed": seed, "run": "12x masks, no retrain",
                     "kept_pct": 100 / ratio["x12"], "accuracy": acc["x12_no_retrain"][-1]})
        rows.append({"seed": seed, "run": "dense", "kept_pct": 100.0, "accuracy": acc["dense"][-1]})
        g = global_masks({p: jnp.abs(w) for p, w in kernels(dense).items()}, 1 - 1 / ratio["x12"])
        glob_kept.append(kept_fraction(g))
        _log(f"seed {seed}: " + ", ".join(f"{k} {v[-1]:.4f}" for k, v in acc.items()))
    m = {k: mean_std(v) for k, v in acc.items()}
    gk = {p: float(np.mean([g[p] for g in glob_kept])) for p in glob_kept[0]}
    out_layer = sorted(gk)[-1]
    margin = gk[out_layer] - max(v for p, v in gk.items() if p != out_layer)
    d = m["dense"]["mean"]
    claims = [
        Claim("a12", f"dense − iterative 12× ({ratio['x12']:.1f}×, Han's per-layer ratios) "
                     "≤ 1.0 pt", 100 * (d - m["x12"]["mean"]), 1.0, "<="),
        Claim("a5", f"dense − iterative 5× ({ratio['x5']:.1f}×) ≤ 0.5 pt",
              100 * (d - m["x5"]["mean"]), 0.5, "<="),
        Claim("b", "the same 12× masks without retraining lose ≥ 3 pt",
              100 * (d - m["x12_no_retrain"]["mean"]), 3.0, ">="),
        Claim("c", "a global magnitude threshold keeps the largest fraction in the output "
                   "layer (kept(out) − max kept(other))", margin, 0.0, ">"),
    ]
    ours = {"dense_acc": m["dense"], "iterative_12x_acc": m["x12"], "iterative_5x_acc": m["x5"],
            "no_retrain_12x_acc": m["x12_no_retrain"], "compression_12x": ratio["x12"],
            "compression_5x": ratio["x5"], "keep_per_layer_12x": keep12,
            "global_threshold_kept_per_layer": {p: round(v, 4) for p, v in gk.items()},
            "seconds": round(time.time() - t0, 1)}
    paper = {"dense_error_pct": 1.64, "pruned_12x_error_pct": 1.59,
             "keep_per_layer_12x": {"fc1": 0.08, "fc2": 0.09, "fc3": 0.26}}
    analysis = claims_summary(claims)
    return TableResult(
        TABLE, TITLE, paper, ours, claims,
        deviations=["Fashion-MNIST instead of MNIST; Adam instead of Caffe SGD.",
                    f"{cfg.rounds} prune/retrain rounds of {cfg.retrain_epochs} epochs (the "
                    "paper iterates more, with longer retraining); keep ratio of round r is "
                    "keep^(r/rounds) per layer.",
                    "L2 regularization as weight decay 5e-5 added to the gradient before Adam."],
        analysis=analysis, quick=quick, rows=rows)
