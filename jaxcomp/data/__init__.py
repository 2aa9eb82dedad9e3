"""Datasets (numpy in), seeded batching and train/validation split."""

__all__ = [
    "DATASETS", "Dataset", "batches", "digits", "epoch_permutation", "fashion_mnist",
    "find_fashion_mnist", "load_dataset", "mnist1d", "split_validation", "synthetic",
]

from jaxcomp.data.dataset import Dataset, batches, epoch_permutation, split_validation
from jaxcomp.data.sources import (
    DATASETS,
    digits,
    fashion_mnist,
    find_fashion_mnist,
    load_dataset,
    mnist1d,
    synthetic,
)
