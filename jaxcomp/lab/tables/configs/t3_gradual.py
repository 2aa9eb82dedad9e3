"""T3 — Zhu & Gupta 2017, "To prune, or not to prune": gradual magnitude pruning.

Recipe: LeNet-300-100 on Fashion-MNIST, Adam 1e-3, batch 128, 12 epochs. Gradual
pruning of every kernel (layer-wise) from 0% to 90% with the cubic schedule
s_t = s_f + (s_i - s_f)(1 - (t - t0)/(n Δt))^3, starting after one epoch
(t0 = 1 epoch of steps) and ending 3000 steps later, masks updated every Δt steps
(Δt ∈ {100, 1000}), then training continues with the masks fixed. Baselines in the
same run, same data order and epochs: the dense net, and a dense small MLP
784-h-h/3-10 whose parameter count matches the pruned net's non-zeros. 3 seeds.

Run:
    jaxcomp reproduce T3            # full mode, writes docs/results/T3.md/.json
    jaxcomp reproduce T3 --quick    # smoke test (<= 40 s), writes T3_quick.*
Expected (full, ~5-8 min on 2 CPU cores): dense ~0.89; gradual 90% ~0.88-0.89;
the small dense MLP ~0.86-0.87; Δt = 100 vs 1000 within a few tenths of a point.
"""

import ml_collections

from jaxcomp.lab.tables.configs.common import lenet300_config


def get_config() -> ml_collections.ConfigDict:
    c = lenet300_config("t3_gradual")
    c.sparsity = 0.9
    c.dts = (100, 1000)
    c.begin_epochs = 1          # t0: gradual pruning starts after this many epochs
    c.span = 3000               # n·Δt: steps from t0 to the final sparsity
    c.quick.update({"dts": (5, 10), "begin_epochs": 0, "span": 20})
    c.lock()
    return c
