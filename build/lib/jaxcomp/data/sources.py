"""Dataset sources: Fashion-MNIST, scikit-learn digits, MNIST-1D and a synthetic set.

Example:
    >>> from jaxcomp.data import load_dataset
    >>> ds = load_dataset("digits")
    >>> ds.input_shape, ds.num_classes
    ((8, 8, 1), 10)
"""

from __future__ import annotations

import gzip
import os
import pathlib
import urllib.request

import numpy as np

from jaxcomp.core.errors import ConfigError, check_choice
from jaxcomp.data.dataset import Dataset

FASHION_MNIST_ENV = "JAXCOMP_FASHION_MNIST_DIR"
FASHION_MNIST_DEBIAN = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_FMNIST_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}


def cache_dir() -> pathlib.Path:
    """``$JAXCOMP_CACHE`` or ``~/.cache/jaxcomp``."""
    return pathlib.Path(os.environ.get("JAXCOMP_CACHE", pathlib.Path.home() / ".cache/jaxcomp"))


def _read_idx(path: pathlib.Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _has_fmnist(d: pathlib.Path) -> bool:
    return all((d / f).is_file() for f in _FMNIST_FILES.values())


def _download_fmnist(d: pathlib.Path) -> bool:
    try:
        d.mkdir(parents=True, exist_ok=True)
        for f in _FMNIST_FILES.values():
            if not (d / f).is_file():
                tmp = d / (f + ".part")
                urllib.request.urlretrieve(FASHION_MNIST_URL + f, tmp)  # noqa: S310
                tmp.replace(d / f)
        return True
    except Exception:
        return False


def find_fashion_mnist(data_dir: str | None = None, download: bool = True) -> pathlib.Path:
    """The directory holding the four Fashion-MNIST IDX files.

    Looks, in order, in ``data_dir``, ``$JAXCOMP_FASHION_MNIST_DIR``, the Debian
    package's ``/usr/share/datasets/fashion-mnist``, the jaxcomp cache, and
    finally downloads into the cache when ``download`` and the network allow.
    """
    if data_dir:
        if _has_fmnist(pathlib.Path(data_dir)):
            return pathlib.Path(data_dir)
        raise ConfigError(f"data.data_dir={data_dir!r} does not hold the Fashion-MNIST files "
                          f"{sorted(_FMNIST_FILES.values())}")
    tried = []
    for cand in (os.environ.get(FASHION_MNIST_ENV), FASHION_MNIST_DEBIAN,
                 str(cache_dir() / "fashion-mnist")):
        if cand:
            tried.append(cand)
            if _has_fmnist(pathlib.Path(cand)):
                return pathlib.Path(cand)
    target = cache_dir() / "fashion-mnist"
    if download and _download_fmnist(target):
        return target
    raise ConfigError(
        "Fashion-MNIST not found (looked in: " + ", ".join(tried) + "). Install it with "
        "`apt-get install dataset-fashion-mnist`, or put the four IDX .gz files in a directory "
        f"and pass data.data_dir or set ${FASHION_MNIST_ENV}, or go online to download."
    )


def fashion_mnist(data_dir: str | None = None, download: bool = True) -> Dataset:
    """Fashion-MNIST (60k train / 10k test, 28×28×1, 10 classes)."""
    d = find_fashion_mnist(data_dir, download)
    arr = {k: _read_idx(d / f) for k, f in _FMNIST_FILES.items()}
    to_x = lambda a: (a.astype(np.float32) / 255.0)[..., None]
    return Dataset("fashion_mnist", to_x(arr["x_train"]), arr["y_train"].astype(np.int32),
                   to_x(arr["x_test"]), arr["y_test"].astype(np.int32), 10)


def digits(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's bundled 8×8 digits (1797 images), always available offline."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[..., None]
    y = d.target.astype(np.int32)
    perm = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(len(x) * test_fraction))
    te, tr = perm[:n_test], perm[n_test:]
    return Dataset("digits", x[tr], y[tr], x[te], y[te], 10)


def mnist1d(num_samples: int = 5000, seed: int = 42) -> Dataset:
    """MNIST-1D generated locally by ``mnist1d.data.make_dataset`` (never downloaded), cached."""
    path = cache_dir() / f"mnist1d_{num_samples}_{seed}.npz"
    if path.is_file():
        z = np.load(path)
        return Dataset("mnist1d", z["x"], z["y"], z["x_test"], z["y_test"], 10)
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = num_samples
    args.seed = seed
    data = make_dataset(args)
    out = {k: np.asarray(data[k]) for k in ("x", "y", "x_test", "y_test")}
    out["x"] = out["x"].astype(np.float32)
    out["x_test"] = out["x_test"].astype(np.float32)
    out["y"] = out["y"].astype(np.int32)
    out["y_test"] = out["y_test"].astype(np.int32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **out)
    tmp.replace(path)
    return Dataset("mnist1d", out["x"], out["y"], out["x_test"], out["y_test"], 10)


def synthetic(num_train: int = 512, num_test: int = 256, shape: tuple[int, ...] = (8, 8, 1),
              num_classes: int = 4, seed: int = 0) -> Dataset:
    """A learnable synthetic task: Gaussian clusters around one random mean per class."""
    rng = np.random.default_rng(seed)
    dim = int(np.prod(shape))
    means = rng.normal(size=(num_classes, dim)).astype(np.float32)

    def make(n):
        y = rng.integers(0, num_classes, size=n).astype(np.int32)
        x = means[y] + rng.normal(scale=3.0, size=(n, dim)).astype(np.float32)
        return x.reshape((n, *shape)), y

    xtr, ytr = make(num_train)
    xte, yte = make(num_test)
    return Dataset("synthetic", xtr, ytr, xte, yte, num_classes)


DATASETS = {
    "fashion_mnist": fashion_mnist,
    "digits": digits,
    "mnist1d": mnist1d,
    "synthetic": synthetic,
}


def load_dataset(name: str, **kwargs) -> Dataset:
    """Load a dataset by name: ``fashion_mnist``, ``digits``, ``mnist1d`` or ``synthetic``."""
    check_choice("data.name", name, DATASETS)
    return DATASETS[name](**kwargs)
