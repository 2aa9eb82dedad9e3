"""T5 — Lee et al. 2019, SNIP: single-shot pruning at initialization by connection sensitivity.

Recipe: LeNet-300-100 on Fashion-MNIST. At initialization, one batch of 100
training examples gives |∂L/∂w · w| for every kernel weight; one global
threshold keeps the top 5% (95% sparse) or 2% (98% sparse); the sparse net is
then trained from scratch with the masks fixed (Adam 1e-3, batch 128, 12 epochs).
Baselines in the same run, same data order and epochs: the dense net, and
uniform random pruning (every kernel at the same sparsity, random masks from an
explicit key) at 95% and 98%. 3 seeds.

Run:
    jaxcomp reproduce T5            # full mode, writes docs/results/T5.md/.json
    jaxcomp reproduce T5 --quick    # smoke test (<= 40 s), writes T5_quick.*
Expected (full, ~4-7 min on 2 CPU cores): dense ~0.89; SNIP 95% ~0.87-0.88; random
95% ~0.85-0.86; the SNIP-vs-random gap grows at 98%.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.name = "t5_snip"
    c.seeds = (0, 1, 2)
    c.limit_train = 0
    c.limit_test = 0
    c.batch_size = 128
    c.snip_batch = 100          # the paper's batch for the sensitivity
    c.learning_rate = 1e-3
    c.epochs = 12
    c.sparsities = (0.95, 0.98)
    c.quick = ml_collections.ConfigDict(
        {"seeds": (0,), "limit_train": 3000, "limit_test": 1000, "epochs": 2})
    c.lock()
    return c
