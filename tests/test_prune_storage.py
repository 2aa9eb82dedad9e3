"""Sparse storage: bit-exact round trips, hand-computed byte counts, orbax save/restore."""

import jax
import numpy as np
import pytest

from jaxcomp.core.errors import ConfigError
from jaxcomp.prune import storage


def sparse(shape, s, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(shape).astype(np.float32)
    w[rng.random(shape) < s] = 0.0
    return w


@pytest.mark.parametrize("fmt", ["bitmask", "relative"])
@pytest.mark.parametrize("bits", [2, 5, 8])
def test_roundtrip_bit_exact(fmt, bits):
    w = sparse((40, 30), 0.9)
    w[0, 0] = -0.0
    w[1, :] = 0.0  # an empty row
    e = storage.encode_bitmask(w) if fmt == "bitmask" else storage.encode_relative(w, bits)
    out = storage.decode(e)
    assert out.dtype == w.dtype and out.shape == w.shape
    np.testing.assert_array_equal(out.view(np.uint32), w.view(np.uint32))


def test_hand_computed_bytes():
    w = np.zeros((2, 8), np.float32)
    w[0, 1], w[1, 7] = 1.0, 2.0
    assert storage.nbytes(storage.encode_bitmask(w)) == 2 * 4 + 2  # values + 16 bits
    e = storage.encode_relative(w, 2)  # span 3: row 1 needs 2 fillers for gap 8
    assert e["gaps"].tolist() == [2, 3, 3, 2]
    assert e["values"].tolist() == [1.0, 0.0, 0.0, 2.0]
    assert storage.nbytes(e) == 4 * 4 + 1 + 4 * 3  # values + 8 bits of gaps + row_ptr


def test_ratio_at_90_percent():
    w = sparse((300, 100), 0.9, seed=1)
    dense = w.nbytes
    ratio_bm = dense / storage.nbytes(storage.encode_bitmask(w))
    nz = np.count_nonzero(w)
    assert abs(ratio_bm - dense / (4 * nz + w.size / 8)) < 1e-9
    assert ratio_bm > 5


def test_tree_and_orbax_roundtrip(tmp_path):
    params = {"Dense_0": {"kernel": sparse((20, 10), 0.8), "bias": np.ones(10, np.float32)},
              "Dense_1": {"kernel": sparse((10, 4), 0.5, seed=2)}}
    enc = storage.encode_tree(params, "relative", index_bits=4)
    storage.save(str(tmp_path / "sparse"), enc)
    back = storage.restore(str(tmp_path / "sparse"))
    assert set(back) == set(enc)
    tree = storage.decode_tree(back, params)
    for a, b in zip(jax.tree.leaves(tree), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)
    assert storage.tree_nbytes(back) == storage.tree_nbytes(enc)


def test_bad_index_bits_and_format():
    with pytest.raises(ConfigError, match="index_bits: got 0"):
        storage.encode_relative(np.ones(3), 0)
    with pytest.raises(ConfigError, match="storage format"):
        storage.encode_tree({"w": np.ones((2, 2))}, "coo")
