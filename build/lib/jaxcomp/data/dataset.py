"""The dataset container, seeded batching and the train/validation split.

Arrays are numpy; images are float32 in ``[0, 1]`` with a trailing channel axis
(``N, H, W, C``), or ``N, L`` for 1-D signals; labels are int32.

Example:
    >>> import numpy as np
    >>> from jaxcomp.data.dataset import Dataset, batches
    >>> ds = Dataset("toy", np.zeros((10, 2), np.float32), np.arange(10) % 2,
    ...              np.zeros((4, 2), np.float32), np.arange(4) % 2, 2)
    >>> [xb.shape[0] for xb, _ in batches(ds.x_train, ds.y_train, 4, seed=0)]
    [4, 4]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np

from jaxcomp.core.errors import ConfigError, check_range


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Train / test (and optional validation) arrays of one dataset."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def __post_init__(self):
        for split, x, y in (("train", self.x_train, self.y_train), ("test", self.x_test,
                                                                    self.y_test)):
            if len(x) == 0:
                raise ConfigError(f"dataset {self.name!r}: the {split} split is empty")
            if len(x) != len(y):
                raise ConfigError(
                    f"dataset {self.name!r}: {split} has {len(x)} inputs but {len(y)} labels"
                )


def split_validation(ds: Dataset, fraction: float, seed: int = 0) -> Dataset:
    """Move a seeded random ``fraction`` of the training set into a validation split.

    Example:
        >>> import numpy as np
        >>> ds = Dataset("t", np.zeros((10, 1)), np.zeros(10, int), np.zeros((2, 1)),
        ...              np.zeros(2, int), 2)
        >>> split_validation(ds, 0.2).x_val.shape
        (2, 1)
    """
    check_range("data.val_fraction", fraction, 0.0, 1.0, hi_open=True)
    if fraction == 0:
        return ds
    n = len(ds.x_train)
    n_val = int(round(n * fraction))
    if n_val == 0 or n_val == n:
        raise ConfigError(f"data.val_fraction={fraction} leaves an empty split of {n} examples")
    perm = np.random.default_rng(seed).permutation(n)
    val, train = perm[:n_val], perm[n_val:]
    return dataclasses.replace(
        ds, x_train=ds.x_train[train], y_train=ds.y_train[train],
        x_val=ds.x_train[val], y_val=ds.y_train[val],
    )


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffling order of one epoch: a function of ``(seed, epoch)`` only."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def batches(
    x: np.ndarray, y: np.ndarray, batch_size: int, *, seed: int | None = None, epoch: int = 0,
    drop_last: bool = True,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(x, y)`` minibatches; shuffled by ``(seed, epoch)`` when seed is given."""
    if batch_size <= 0:
        raise ConfigError(f"train.batch_size: got {batch_size}; must be > 0")
    n = len(x)
    if n == 0:
        raise ConfigError("batches: the dataset is empty")
    order = epoch_permutation(n, seed, epoch) if seed is not None else np.arange(n)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for i in range(0, stop, batch_size):
        idx = order[i : i + batch_size]
        yield x[idx], y[idx]
