"""Settings several table configs start from (each config adds its own keys after them).

Example:
    >>> c = lenet300_config("t5_snip")
    >>> c.name, c.seeds, c.epochs, c.quick.epochs
    ('t5_snip', (0, 1, 2), 12, 2)
    >>> single_seed_config("t8_decompose").seed
    0
    >>> gpt_calib_config("t9_gptq").quick.calib_windows
    16
"""

import ml_collections

from jaxcomp.lab.tables.configs.gpt_base import get_config as gpt_config


def lenet300_config(name: str) -> ml_collections.ConfigDict:
    """The LeNet-300-100 pruning tables' (T1, T3, T5) shared settings, unlocked: three
    seeds, all of Fashion-MNIST, batch 128, Adam at 1e-3, 12 epochs; quick: one seed,
    3000 training and 1000 test images, 2 epochs."""
    c = ml_collections.ConfigDict()
    c.name = name
    c.seeds = (0, 1, 2)
    c.limit_train = 0
    c.limit_test = 0
    c.batch_size = 128
    c.learning_rate = 1e-3
    c.epochs = 12
    c.quick = ml_collections.ConfigDict(
        {"seeds": (0,), "limit_train": 3000, "limit_test": 1000, "epochs": 2})
    return c


def single_seed_config(name: str) -> ml_collections.ConfigDict:
    """One seed (0) on Fashion-MNIST in batches of 128 (T7, T8), unlocked."""
    c = ml_collections.ConfigDict()
    c.name = name
    c.data = "fashion_mnist"
    c.seed = 0
    c.batch_size = 128
    return c


def gpt_calib_config(name: str) -> ml_collections.ConfigDict:
    """The base-GPT tables' (T9, T10) shared settings, unlocked: the base GPT
    (``configs/gpt_base.py``), two seeds, 128 calibration windows in batches of 16;
    quick: one seed, 16 windows in batches of 8."""
    c = ml_collections.ConfigDict()
    c.name = name
    c.gpt = gpt_config()
    c.seeds = (0, 1)
    c.calib_windows = 128
    c.calib_batch = 16
    c.quick = ml_collections.ConfigDict({"seeds": (0,), "calib_windows": 16, "calib_batch": 8})
    return c
