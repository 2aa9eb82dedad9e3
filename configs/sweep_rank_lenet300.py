"""Rank sweep: truncated SVD of LeNet-300-100's first layer (784x300) on Fashion-MNIST,
ranks 8-64 x 2 seeds, 1 epoch of fine-tuning after factorizing.

Run:
    jaxcomp sweep configs/sweep_rank_lenet300.py --out runs/rank
    jaxcomp report runs/rank --metric decompose_accuracy_after_finetune \
        --size decompose_totals.params_after
Each rank is its own group (a rank changes shapes); the 2 seeds of a group train their
dense models together in one vmapped program, then factorize and fine-tune one by one.
Expected (Denton 2014 / PAPERS.md T8a), measured here (2 seeds, mean; dense 0.871 after 3
epochs): before fine-tuning 0.666 / 0.806 / 0.862 / 0.870 at rank 8 / 16 / 32 / 64; after
1 epoch of fine-tuning 0.853 / 0.872 / 0.876 / 0.877. 4 groups (one compile each); about
80 s of CPU time.
"""

from jaxcomp.experiment import base_config
from jaxcomp.sweep.grid import product


def get_config():
    c = base_config()
    c.name = "sweep_rank_lenet300"
    c.data.name = "fashion_mnist"
    c.model.name = "lenet300"
    c.train.epochs = 3
    c.decompose.method = "svd"
    c.decompose.rank = 32
    c.decompose.where = ("Dense_0/kernel",)
    c.decompose.finetune_epochs = 1
    c.decompose.measure_batch = 0
    return c


def get_sweep():
    return product({"decompose.rank": [8, 16, 32, 64]}, {"seed": [0, 1]})
