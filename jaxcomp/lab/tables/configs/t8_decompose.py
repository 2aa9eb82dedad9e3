"""T8 — Denton et al. 2014 (SVD), Kim et al. 2016 (Tucker-2), Lebedev et al. 2015 (CP),
Li et al. 2017 (L1 filter pruning), on Fashion-MNIST.

(a) LeNet-300-100 (Adam 1e-3, batch 128, 10 epochs): SVD of Dense_0 (784x300) at
    rank 32 (235K -> 35K weights), accuracy before and after 2 epochs of fine-tuning.
(b) LeNet-5 'classic' (6-16-120-84; Adam 1e-3, batch 128, 4 epochs): Tucker-2 of
    Conv_1 (5x5x6x16, 2400 weights) at ranks (4, 5) -> 604 weights (3.97x fewer),
    HOSVD + 10 HOOI sweeps, then 2 epochs of fine-tuning.
(c) CP of Conv_1 at rank 19 -> 608 weights (comparable to (b)), 50 ALS sweeps,
    then 2 epochs of fine-tuning.
(d) Remove 8 of Conv_1's 16 filters by L1 norm — physically (jaxcomp.prune.surgery:
    Conv_1 5x5x6x8, Dense_0 200x120) — then 2 epochs of fine-tuning; L1 vs the mean
    of 5 random 8-filter choices before fine-tuning.
Fine-tuning: Adam 2e-4, batch 128, same seed and data order for every method; the
dense baselines are fine-tuned the same epochs and the after-fine-tuning drops are
measured against them.
(e) Forward time: median of 7 interleaved runs of the jitted forward pass at batch 1024
(wall clock, process CPU time beside it); FLOPs: XLA's cost analysis at batch 1. Every
decomposed/pruned model's speed-up over its dense model is reported beside its FLOP
reduction; the L1-pruned model's speed-up must be >= 0.7 of its FLOP reduction (gating),
the factorized ones are reported without gating.

Run:
    jaxcomp reproduce T8            # full mode (~3-5 min on 2 idle cores)
    jaxcomp reproduce T8 --quick    # smoke test (subset, 1 epoch), writes T8_quick.*
Expected (full): a run of this recipe on a loaded 2-core machine (7.6 min) measured
LeNet-300-100 0.8845 (0.8953 after the same 2 fine-tuning epochs); rank-32 SVD 0.7824
before and 0.8858 after fine-tuning, 0.95 pt below the fine-tuned dense model (a2 fails);
LeNet-5 0.8759 (0.8866 fine-tuned); Tucker-2 0.7583 -> 0.8743 (b1 fails at 1.23 pt, 90%
of the drop recovered); CP 0.7471 -> 0.8809; L1 pruning 0.8105 -> 0.8776 (0.90 pt below
dense), random choice 0.7142 before fine-tuning. (e) at batch 1024: the L1-pruned
LeNet-5 ran 0.91x as fast as dense for 1.54x fewer FLOPs (0.59 of its FLOP reduction,
e fails), Tucker-2 0.95x, CP 0.41x, SVD 3.3x for 4.0x fewer FLOPs.
"""

import ml_collections

from jaxcomp.lab.tables.configs.common import single_seed_config


def get_config() -> ml_collections.ConfigDict:
    c = single_seed_config("t8_decompose")
    c.learning_rate = 1e-3
    c.finetune_lr = 2e-4
    c.finetune_epochs = 2
    c.limit_train = 0
    c.limit_test = 0
    c.mlp = ml_collections.ConfigDict({"epochs": 10, "layer": "Dense_0", "rank": 32})
    c.cnn = ml_collections.ConfigDict({
        "model": "lenet5", "epochs": 4, "layer": "Conv_1", "tucker_ranks": (4, 5),
        "tucker_iters": 10, "cp_rank": 19, "cp_iters": 50, "prune_keep": 8,
        "random_draws": 5})
    c.measure_batch = 1024
    c.measure_repeats = 7
    c.quick = ml_collections.ConfigDict({
        "limit_train": 2000, "limit_test": 1000, "mlp_epochs": 1, "cnn_epochs": 1,
        "finetune_epochs": 1, "random_draws": 1, "measure_repeats": 2,
        "measure_batch": 256})
    return c
