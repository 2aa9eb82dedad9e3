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
Expected (full): LeNet-300-100 ≈ 0.89; rank-32 SVD costs a few tenths to ~2 pt before
fine-tuning and ≲ 0.3 pt after; LeNet-5 ≈ 0.87-0.89 after 4 epochs; Tucker-2 and CP drop
several points before and recover to within ~1 pt after fine-tuning; L1 pruning of 50%
of Conv_1's filters loses < 1 pt after fine-tuning and beats random choice before it.
For (e), the last full run before this claim existed (docs/results/T8.md, batch 1000)
timed the L1-pruned LeNet-5 at 62.4 ms against 64.3 ms dense for 0.54 vs 0.83 MFLOP, and
CP at 191.9 ms: claim e is not expected to pass on CPU.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.name = "t8_decompose"
    c.data = "fashion_mnist"
    c.seed = 0
    c.batch_size = 128
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
