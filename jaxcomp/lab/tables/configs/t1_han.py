"""T1 — Han et al. 2015, "Learning both Weights and Connections": iterative prune → retrain.

Recipe: LeNet-300-100 on Fashion-MNIST, Adam 1e-3 with L2 regularization
(weight decay 5e-5 added to the gradient), batch 128, 12 epochs dense. Then
``rounds`` rounds of magnitude pruning per layer toward Han's per-layer keep
ratios (8% / 9% / 26% of Dense_0 / Dense_1 / Dense_2 — 12× fewer weights), each
round followed by ``retrain_epochs`` epochs at 1/10 of the learning rate with the
masks fixed (the keep ratio of round r is keep^(r/rounds)). The same at 5× (the
ratios scaled to 20% kept overall). Controls: the final 12× masks applied to the
dense net without retraining; one global magnitude threshold at the same overall
sparsity (which layer keeps the most). 3 seeds.

Run:
    jaxcomp reproduce T1            # full mode, writes docs/results/T1.md/.json
    jaxcomp reproduce T1 --quick    # smoke test (<= 40 s), writes T1_quick.*
Expected (full, ~5-8 min on 2 CPU cores): dense ~0.89; 12× within ~0.5 pt of dense,
5× at or above dense; the 12× masks without retraining ~5-20 pt lower; the global
threshold keeps ~20-30% of the output layer vs < 10% of the first.
"""

import ml_collections

from jaxcomp.lab.tables.configs.common import lenet300_config


def get_config() -> ml_collections.ConfigDict:
    c = lenet300_config("t1_han")
    c.weight_decay = 5e-5
    c.rounds = 3
    c.retrain_epochs = 3
    c.retrain_lr_factor = 0.1
    c.keep = ml_collections.ConfigDict(
        {"Dense_0/kernel": 0.08, "Dense_1/kernel": 0.09, "Dense_2/kernel": 0.26})
    c.keep_5x = 0.2             # overall kept fraction of the 5× run (Han's ratios scaled)
    c.quick.update({"rounds": 2, "retrain_epochs": 1})
    c.lock()
    return c
