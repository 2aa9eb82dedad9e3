"""T4 — The Lottery Ticket Hypothesis (Frankle & Carbin 2019), LeNet-300-100, Fashion-MNIST.

Recipe (the paper's): Adam 1.2e-3, batch 60; iterative magnitude pruning that
removes 20% of each hidden layer's surviving weights and 10% of the output
layer's per round, resetting the survivors to their initial weights and
retraining. At the rounds nearest the paper's 21.1% and 13.5% remaining
(rounds 7 and 9: 21.0% and 13.5%) the ticket is compared with the dense net,
with the same mask randomly reinitialized, and with a random mask of the same
layer-wise sparsity (rewound to the same initial weights); 3 seeds, mean ± std.

Run:
    jaxcomp reproduce T4            # full mode, writes docs/results/T4.md/.json
    jaxcomp reproduce T4 --quick    # smoke test (<= 40 s), writes T4_quick.*
Expected (full, 2 CPU cores, ~6-9 min): dense ~0.88-0.89; tickets at 21% and
13.5% within ~0.5 pt of dense or above it; reinitialized and random-mask
controls ~0.5-1.5 pt below the tickets.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.name = "t4_lottery"
    c.seeds = (0, 1, 2)
    c.limit_train = 0          # 0 = the whole 60k training set
    c.limit_test = 0
    c.batch_size = 60          # the paper's
    c.learning_rate = 1.2e-3   # Adam, the paper's
    c.epochs = 6               # per training run (6000 iterations; the paper: up to 50k)
    c.rate = 0.2               # per round, hidden layers
    c.output_rate = 0.1        # per round, the output layer
    c.rounds = 9               # 0.8**9 -> 13.5% of the weights remain
    c.eval_rounds = (7, 9)     # ~21% and ~13.5% remaining, where the claims are tested
    c.quick = ml_collections.ConfigDict(
        {"seeds": (0,), "limit_train": 2000, "limit_test": 500, "epochs": 1, "rounds": 2,
         "eval_rounds": (2,), "batch_size": 100})
    c.lock()
    return c
