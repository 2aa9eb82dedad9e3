"""Huffman coding and Deep Compression's byte format: hand-computed code
lengths, bit-exact round trips, relative-index fillers, and sizes from bytes."""

import heapq

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcomp.core.errors import ConfigError
from jaxcomp.quant import deep_compression as dc
from jaxcomp.quant import huffman
from jaxcomp.quant.sharing import shared_params, weight_sharing


def test_code_lengths_hand_computed():
    # CLRS's example: a:45 b:13 c:12 d:16 e:9 f:5 -> a=0, b=101, c=100, d=111, e=1101, f=1100.
    assert huffman.code_lengths(np.array([45, 13, 12, 16, 9, 5])).tolist() == [1, 3, 3, 3, 4, 4]
    # Powers of two give a complete "comb": 1, 2, 3, 4, 4.
    assert huffman.code_lengths(np.array([16, 8, 4, 2, 2])).tolist() == [1, 2, 3, 4, 4]
    # Absent symbols get no code; a lone symbol gets one bit.
    assert huffman.code_lengths(np.array([0, 7, 0])).tolist() == [0, 1, 0]


def test_canonical_codes_are_prefix_free_and_hand_computed():
    lengths = np.array([1, 3, 3, 3, 4, 4])
    codes = huffman.canonical_codes(lengths)
    words = [format(int(c), f"0{int(n)}b") for c, n in zip(codes, lengths, strict=True)]
    assert words == ["0", "100", "101", "110", "1110", "1111"]
    for i, a in enumerate(words):
        for j, b in enumerate(words):
            assert i == j or not b.startswith(a)


def entropy_bound_bits(counts):
    """Payload bits of an optimal prefix code, by the textbook merge-cost identity."""
    heap = [int(c) for c in counts if c > 0]
    heapq.heapify(heap)
    total = 0
    while len(heap) > 1:
        a, b = heapq.heappop(heap), heapq.heappop(heap)
        total += a + b
        heapq.heappush(heap, a + b)
    return total


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roundtrip_bit_exact_and_optimal(seed):
    rng = np.random.default_rng(seed)
    data = rng.geometric(0.3, size=2000) - 3  # skewed, includes negatives
    blob = huffman.encode(data)
    np.testing.assert_array_equal(huffman.decode(blob), data)
    counts = np.bincount(data - data.min())
    payload = huffman.encoded_bits(data)
    assert payload == entropy_bound_bits(counts)
    n_sym = len(counts)
    assert len(blob) == huffman.HEADER.size + n_sym + (payload + 7) // 8
    # Never worse than the entropy + 1 bit per symbol.
    p = counts[counts > 0] / counts.sum()
    assert payload <= len(data) * (-(p * np.log2(p)).sum() + 1)


def test_roundtrip_edge_cases():
    for data in [np.zeros(0, np.int64), np.array([5]), np.array([3, 3, 3, 3]),
                 np.arange(300)]:
        np.testing.assert_array_equal(huffman.decode(huffman.encode(data)), data)


def test_huffman_bad_input():
    with pytest.raises(ConfigError, match="huffman.symbols"):
        huffman.encode(np.array([0.5, 1.5]))
    with pytest.raises(ConfigError, match="huffman.decode"):
        huffman.decode(b"\x01")
    blob = huffman.encode(np.arange(10))
    with pytest.raises(ConfigError, match="ended early"):
        huffman.decode(blob[:-2])


@pytest.mark.parametrize("rel_bits", [2, 3, 5])
def test_relative_gaps_roundtrip_with_fillers(rel_bits):
    rng = np.random.default_rng(rel_bits)
    pos = np.sort(rng.choice(2000, size=60, replace=False))
    gaps = dc.relative_gaps(pos, rel_bits)
    esc = 2 ** rel_bits - 1
    assert gaps.max() <= esc
    # One real entry per non-zero; fillers = sum over runs of floor(run / esc).
    runs = np.diff(np.concatenate([[-1], pos])) - 1
    assert (gaps != esc).sum() == len(pos)
    assert len(gaps) == len(pos) + int((runs // esc).sum())
    np.testing.assert_array_equal(dc.gaps_to_positions(gaps, rel_bits), pos)


def test_fixed_width_pack_roundtrip():
    v = np.random.default_rng(0).integers(0, 32, size=101)
    blob = dc.pack_fixed(v, 5)
    assert len(blob) == (101 * 5 + 7) // 8
    np.testing.assert_array_equal(dc.unpack_fixed(blob, 101, 5), v)


def pruned_params(seed=0):
    k1, k2 = jax.random.split(jax.random.key(seed))
    w1 = jax.random.normal(k1, (40, 30))
    w2 = jax.random.normal(k2, (30, 10))
    return {"Dense_0": {"kernel": jnp.where(jnp.abs(w1) > 1.6, w1, 0.0), "bias": jnp.ones(30)},
            "Dense_1": {"kernel": jnp.where(jnp.abs(w2) > 1.0, w2, 0.0), "bias": jnp.zeros(10)}}


@pytest.mark.parametrize("use_huffman", [False, True])
def test_compress_decompress_bit_exact(use_huffman):
    params = pruned_params()
    t = weight_sharing(bits=4, where=[".*/kernel"])
    s = t.init(params)
    comp = dc.compress(params, s, rel_bits=3, use_huffman=use_huffman)
    back = dc.decompress(comp, params)
    want = shared_params(params, s)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert comp.nbytes == sum(len(b) for b in comp.blobs.values())
    rep = comp.report()
    lay = rep["Dense_0/kernel"]
    assert lay["total"] == lay["header"] + lay["codebook"] + lay["values"] + lay["gaps"]
    assert lay["codebook"] == 16 * 4
    assert rep["Dense_0/bias"]["raw"] == 30 * 4
    if not use_huffman:
        nnz = int((np.asarray(params["Dense_0"]["kernel"]) != 0).sum())
        assert lay["values"] == (nnz * 4 + 7) // 8


def test_huffman_shrinks_and_ratio_vs_dense():
    params = pruned_params(1)
    s = weight_sharing(bits=4, where=[".*/kernel"]).init(params)
    small = dc.compress(params, s, rel_bits=3, use_huffman=True).report()
    # Tiny streams keep fixed width when the code table would cost more.
    assert small["Dense_1/kernel"]["total"] <= dc.compress(
        params, s, rel_bits=3, use_huffman=False).report()["Dense_1/kernel"]["total"]
    w = jax.random.normal(jax.random.key(2), (300, 100))
    params = {"w": jnp.where(jnp.abs(w) > 1.5, w, 0.0), "b": jnp.zeros(100)}
    s = weight_sharing(bits=5, where=["w"]).init(params)
    fixed = dc.compress(params, s, rel_bits=3, use_huffman=False).nbytes
    huff = dc.compress(params, s, rel_bits=3, use_huffman=True).nbytes
    dense = dc.dense_fp32_bytes(params)
    assert dense == 4 * (300 * 100 + 100)
    assert huff < fixed < dense


def test_rel_bits_checked():
    with pytest.raises(ConfigError, match=r"deep_compression.rel_bits: got 0; allowed range"):
        dc.relative_gaps(np.arange(3), 0)
