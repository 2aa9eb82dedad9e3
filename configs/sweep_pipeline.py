"""Combined pipeline: a LeNet-300-100 student on Fashion-MNIST, distilled from a 2x1200
MLP teacher (KD, T in {2, 4}), gradually magnitude-pruned to {80, 90}% and post-training
quantized to 8-bit weights — 2 x 2 settings x 2 seeds.

Run:
    jaxcomp sweep configs/sweep_pipeline.py --out runs/pipeline
    jaxcomp report runs/pipeline --metric quant_test_accuracy --size int_bytes
Temperature, sparsity and seed are vector keys: the 8 runs train in one vmapped program
(1 compile) with the teacher trained once and its logits cached; PTQ runs per setting
after training.
Expected (measured 2026-11-28, 2 idle CPU cores, 1 compile; 179 s in all in one run, 67 s
in a later one): teacher 0.8795; test accuracy (mean of 2 seeds) T=2: 0.8667 at 80%,
0.8592 at 90% sparsity; T=4: 0.8590 and 0.8518 (both runs alike). 8-bit PTQ changes
accuracy by at most 0.07 pt (quant_test_accuracy). At 90% the students are 2.0-2.8 pt
below the teacher; `bytes` (bitmask + fp32 values) is 137 KB, 7.8x below dense fp32
(1,066 KB); `int_bytes` (the int8 export with each pruned kernel stored as a bitmask
plus its non-zero codes) is 63 KB at 90% and 90 KB at 80%, 16.9x and 11.9x below dense
fp32 (`int_bytes_dense`, every code stored, is 270 KB).
"""

from jaxcomp.experiment import base_config
from jaxcomp.sweep.grid import product


def get_config():
    c = base_config()
    c.name = "sweep_pipeline"
    c.data.name = "fashion_mnist"
    c.model.name = "lenet300"
    c.train.epochs = 5
    c.prune.method = "magnitude"
    c.prune.schedule = "gradual"
    c.prune.frequency = 100
    c.prune.sparsity = 0.9
    c.distill.method = "kd"
    c.distill.alpha = 0.9
    c.distill.teacher_features = (1200, 1200)
    c.distill.teacher_epochs = 5
    c.quant.method = "ptq"
    c.quant.bits = 8
    return c


def get_sweep():
    return product({"distill.temperature": [2.0, 4.0]}, {"prune.sparsity": [0.8, 0.9]},
                   {"seed": [0, 1]})
