"""T3 — Zhu & Gupta 2017: gradual magnitude pruning vs a small dense net of equal size.

Settings come from ``tables/configs/t3_gradual.py``. For each seed: the dense
LeNet-300-100, gradual 90% pruning at each Δt, and a dense small MLP with as
many parameters as the pruned net has non-zeros, all with the same data
order and epochs. The pruned runs share one compiled epoch (sparsity, schedule
and gate are arrays in the optimizer state).
"""

from __future__ import annotations

import time

import numpy as np

from jaxcomp.experiment.paper_table import Claim, TableResult, claims_summary, mean_std
from jaxcomp.lab.tables.lenet import LeNet300Kit
from jaxcomp.models import get_model
from jaxcomp.prune.recipes import PruneTrainer, kept_fraction

TABLE = "T3"
TITLE = "To prune, or not to prune: gradual magnitude pruning (LeNet-300-100)"
CONFIG = "t3_gradual"


_KIT = LeNet300Kit(TABLE, CONFIG)
load_config, _log = _KIT.load_config, _KIT.log


def small_widths(budget: int, d_in: int = 784, classes: int = 10) -> tuple[int, int]:
    """The widest ``(h, round(h/3))`` MLP whose parameter count is at most ``budget``."""
    best = (1, 1)
    for h in range(1, 300):
        h2 = max(1, round(h / 3))
        n = d_in * h + h + h * h2 + h2 + h2 * classes + classes
        if n <= budget:
            best = (h, h2)
    return best


def run(quick: bool = False) -> TableResult:
    cfg = load_config(quick)
    t0 = time.time()
    ds, big = _KIT.data_and_model(cfg)
    tr = PruneTrainer(big, ds, batch_size=cfg.batch_size, schedule_kind="polynomial")
    spe = tr.steps_per_epoch
    begin = cfg.begin_epochs * spe
    params0 = tr.init_params(0)
    n_kernel = sum(int(np.prod(params0[k]["kernel"].shape)) for k in params0)
    n_bias = sum(int(np.prod(params0[k]["bias"].shape)) for k in params0)
    nonzeros = round((1 - cfg.sparsity) * n_kernel) + n_bias
    h1, h2 = small_widths(nonzeros)
    small = get_model("mlp", input_shape=ds.input_shape, num_classes=ds.num_classes,
                      features=(h1, h2))
    tr_small = PruneTrainer(small, ds, batch_size=cfg.batch_size, schedule_kind="polynomial")
    p_small = tr_small.init_params(0)
    n_small = sum(int(np.prod(x.shape)) for k in p_small for x in p_small[k].values())
    _log(f"pruned net non-zeros {nonzeros}; small MLP 784-{h1}-{h2}-10 has {n_small} params")
    rows, acc = [], {"dense": [], "small": [], **{f"dt{d}": [] for d in cfg.dts}}
    kept = {}
    for seed in cfg.seeds:
        p = tr.init_params(seed)
        s = tr.train(tr.state(p, sparsity=0.0, lr=cfg.learning_rate, seed=seed),
                     epochs=cfg.epochs, seed=seed)
        acc["dense"].append(tr.evaluate(s))
        for d in cfg.dts:
            st = tr.state(p, sparsity=cfg.sparsity, lr=cfg.learning_rate, begin=begin,
                          end=begin + cfg.span, every=d, seed=seed)
            st = tr.train(st, epochs=cfg.epochs, seed=seed)
            acc[f"dt{d}"].append(tr.evaluate(st))
            kept[d] = kept_fraction(tr.masks(st))
            rows.append({"seed": seed, "run": f"gradual 90%, dt={d}",
                         "sparsity": round(tr.sparsity(st), 4), "accuracy": acc[f"dt{d}"][-1]})
        ss = tr_small.train(tr_small.state(tr_small.init_params(seed), sparsity=0.0,
                                           lr=cfg.learning_rate, seed=seed),
                            epochs=cfg.epochs, seed=seed)
        acc["small"].append(tr_small.evaluate(ss))
        rows.append({"seed": seed, "run": "dense LeNet-300-100", "sparsity": 0.0,
                     "accuracy": acc["dense"][-1]})
        rows.append({"seed": seed, "run": f"dense small 784-{h1}-{h2}-10", "sparsity": 0.0,
                     "accuracy": acc["small"][-1]})
        _log(f"seed {seed}: " + ", ".join(f"{k} {v[-1]:.4f}" for k, v in acc.items()))
    m = {k: mean_std(v) for k, v in acc.items()}
    d0, d1 = cfg.dts[0], cfg.dts[-1]
    g0 = m[f"dt{d0}"]["mean"]
    claims = [
        Claim("a", f"gradual 90% (Δt={d0}) − dense small MLP of equal non-zeros ≥ 0.5 pt",
              100 * (g0 - m["small"]["mean"]), 0.5, ">="),
        Claim("b", f"dense − gradual 90% (Δt={d0}) ≤ 1.0 pt",
              100 * (m["dense"]["mean"] - g0), 1.0, "<="),
        Claim("c", f"|acc(Δt={d0}) − acc(Δt={d1})| ≤ 0.3 pt",
              100 * abs(g0 - m[f"dt{d1}"]["mean"]), 0.3, "<="),
    ]
    ours = {"dense_acc": m["dense"], "small_mlp_acc": m["small"],
            "small_mlp": f"784-{h1}-{h2}-10 ({n_small} params)",
            "pruned_nonzeros": nonzeros, "kept_per_layer": kept.get(d0, {}),
            **{f"gradual90_dt{d}_acc": m[f"dt{d}"] for d in cfg.dts},
            "seconds": round(time.time() - t0, 1)}
    paper = {"claim": "large-sparse models beat small-dense models with the same number of "
                      "non-zero parameters (ImageNet CNNs, PTB LSTMs); the cubic schedule with "
                      "Δt between 100 and 1000 steps",
             "schedule": "s_t = s_f + (s_i − s_f)(1 − (t − t0)/(nΔt))³"}
    analysis = claims_summary(claims)
    return TableResult(
        TABLE, TITLE, paper, ours, claims,
        deviations=["Fashion-MNIST LeNet-300-100 instead of ImageNet/PTB models.",
                    f"{cfg.epochs} epochs of Adam (paper: SGD, many more steps); pruning from "
                    f"t0 = {begin} to t0 + {cfg.span} steps, then training with fixed masks.",
                    "Layer-wise 90% on every kernel (biases dense); the paper excluded some "
                    "layers."],
        analysis=analysis, quick=quick, rows=rows)
