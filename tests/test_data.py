"""Datasets, seeded batching, validation split and the Fashion-MNIST error path."""

import gzip

import numpy as np
import pytest

from jaxcomp.core import ConfigError
from jaxcomp.data import (
    Dataset,
    batches,
    digits,
    find_fashion_mnist,
    load_dataset,
    mnist1d,
    sources,
    split_validation,
    synthetic,
)


def test_digits_shapes_and_range():
    ds = digits()
    assert ds.input_shape == (8, 8, 1) and ds.num_classes == 10
    assert len(ds.x_train) + len(ds.x_test) == 1797
    assert ds.x_train.min() >= 0 and ds.x_train.max() <= 1


def test_batches_seeded_and_complete():
    x = np.arange(10)[:, None].astype(np.float32)
    y = np.arange(10)
    a = [yb.tolist() for _, yb in batches(x, y, 3, seed=1, epoch=0)]
    b = [yb.tolist() for _, yb in batches(x, y, 3, seed=1, epoch=0)]
    c = [yb.tolist() for _, yb in batches(x, y, 3, seed=1, epoch=1)]
    assert a == b and a != c and len(a) == 3
    flat = sum((yb.tolist() for _, yb in batches(x, y, 3, seed=1, drop_last=False)), [])
    assert sorted(flat) == list(range(10))


def test_batches_bad_size():
    with pytest.raises(ConfigError, match="batch_size"):
        list(batches(np.zeros((4, 1)), np.zeros(4), 0))


def test_split_validation():
    ds = synthetic(num_train=100, num_test=10)
    s = split_validation(ds, 0.2, seed=0)
    assert len(s.x_val) == 20 and len(s.x_train) == 80
    with pytest.raises(ConfigError, match="val_fraction"):
        split_validation(ds, 1.5)


def test_empty_and_mismatched_dataset():
    with pytest.raises(ConfigError, match="empty"):
        Dataset("e", np.zeros((0, 2)), np.zeros(0), np.zeros((1, 2)), np.zeros(1), 2)
    with pytest.raises(ConfigError, match="labels"):
        Dataset("m", np.zeros((3, 2)), np.zeros(2), np.zeros((1, 2)), np.zeros(1), 2)


def test_unknown_dataset_suggests():
    with pytest.raises(ConfigError, match="fashion_mnist"):
        load_dataset("fashion_mnst")


def _write_idx(path, arr):
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_fashion_mnist_from_user_dir(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 256, (5, 28, 28))
    for name, arr in [("train-images-idx3-ubyte.gz", imgs), ("t10k-images-idx3-ubyte.gz", imgs),
                      ("train-labels-idx1-ubyte.gz", np.arange(5)),
                      ("t10k-labels-idx1-ubyte.gz", np.arange(5))]:
        _write_idx(tmp_path / name, arr)
    ds = sources.fashion_mnist(str(tmp_path))
    assert ds.x_train.shape == (5, 28, 28, 1)
    np.testing.assert_allclose(ds.x_train[..., 0] * 255, imgs, atol=1e-4)
    assert ds.y_test.tolist() == [0, 1, 2, 3, 4]


def test_fashion_mnist_missing_says_how(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "FASHION_MNIST_DEBIAN", str(tmp_path / "none"))
    monkeypatch.setenv("JAXCOMP_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(sources.FASHION_MNIST_ENV, raising=False)
    with pytest.raises(ConfigError, match="apt-get install dataset-fashion-mnist"):
        find_fashion_mnist(download=False)
    with pytest.raises(ConfigError, match="does not hold"):
        find_fashion_mnist(str(tmp_path), download=False)


def test_mnist1d_generated_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXCOMP_CACHE", str(tmp_path))
    a = mnist1d(num_samples=200, seed=3)
    assert a.x_train.shape[1] == 40 and len(a.x_train) + len(a.x_test) == 200
    assert list(tmp_path.glob("mnist1d_*.npz"))
    b = mnist1d(num_samples=200, seed=3)
    np.testing.assert_array_equal(a.x_train, b.x_train)
