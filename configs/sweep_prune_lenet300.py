"""Pruning sweep: gradual magnitude pruning (Zhu & Gupta 2017) of LeNet-300-100 on
Fashion-MNIST, sparsity {0.5, 0.8, 0.9, 0.95, 0.98} x 2 seeds, 5 epochs.

Run:
    jaxcomp sweep configs/sweep_prune_lenet300.py --out runs/prune
    jaxcomp report runs/prune
Sparsity and seed are vector keys (the sparsity schedule lives in the pruner's state),
so the 10 runs train as one vmapped program (1 compile).
Expected (PAPERS.md T1/T3), measured here (2 seeds, mean): test accuracy 0.875 / 0.874 /
0.872 / 0.862 / 0.824 at 50 / 80 / 90 / 95 / 98% (dense LeNet-300-100 after 5 epochs is
about 0.88); `bytes` (the smaller of bitmask and relative-index CSR storage) 7.8x below
dense fp32 at 90%, 22x at 98%. About 2 minutes of CPU time (120 s user) on 2 cores.
"""

from jaxcomp.experiment import base_config
from jaxcomp.sweep.grid import product


def get_config():
    c = base_config()
    c.name = "sweep_prune_lenet300"
    c.data.name = "fashion_mnist"
    c.model.name = "lenet300"
    c.train.epochs = 5
    c.train.batch_size = 128
    c.train.learning_rate = 1e-3
    c.prune.method = "magnitude"
    c.prune.schedule = "gradual"
    c.prune.frequency = 100
    return c


def get_sweep():
    return product({"prune.sparsity": [0.5, 0.8, 0.9, 0.95, 0.98]}, {"seed": [0, 1]})
