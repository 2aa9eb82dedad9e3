"""LeNet-300-100 on Fashion-MNIST, dense baseline.

Run:
    jaxcomp train configs/lenet300_fmnist.py
Expected: test accuracy about 0.88-0.89 after 10 epochs (Adam 1e-3, batch 128),
about 10 s on 2 CPU cores.
"""

from jaxcomp.experiment import base_config


def get_config():
    c = base_config()
    c.name = "lenet300_fmnist"
    c.data.name = "fashion_mnist"
    c.model.name = "lenet300"
    c.train.epochs = 10
    c.train.batch_size = 128
    c.train.learning_rate = 1e-3
    return c
