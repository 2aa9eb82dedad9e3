"""Quantization bit sweep: post-training quantization (round to nearest, symmetric
per-channel weights, float activations) of LeNet-300-100 on Fashion-MNIST at
{8, 6, 4, 3, 2} bits x 2 seeds.

Run:
    jaxcomp sweep configs/sweep_quant_bits.py --out runs/quant_bits
    jaxcomp report runs/quant_bits --metric quant_test_accuracy --size int_bytes
The bit width only matters after training, so settings of one seed have identical
training: the runner checks this with one train step and trains each seed once (2
trainings in one vmapped program), then quantizes per setting.
Expected (PAPERS.md T7), measured here (2 seeds, mean; 2026-11-28, 18 s on 2 idle cores):
after PTQ 0.875 / 0.876 / 0.874 / 0.858 / 0.29 at 8 / 6 / 4 / 3 / 2 bits (2 bits collapses
without QAT); int_bytes 270 KB at 8 and 6 bits (one byte per weight), 136 KB at 4 bits
(packed nibbles), 103 KB at 3 and 47 KB at 2 bits (most codes round to 0 there, so the
kernels are stored as a bitmask plus their non-zero codes; int_bytes_dense stays 136 KB)
vs 1066 KB fp32. 2 trainings for 10 runs.
"""

from jaxcomp.experiment import base_config
from jaxcomp.sweep.grid import product


def get_config():
    c = base_config()
    c.name = "sweep_quant_bits"
    c.data.name = "fashion_mnist"
    c.model.name = "lenet300"
    c.train.epochs = 5
    c.quant.method = "ptq"
    c.quant.per_channel = True
    c.quant.symmetric = True
    return c


def get_sweep():
    return product({"quant.bits": [8, 6, 4, 3, 2]}, {"seed": [0, 1]})
