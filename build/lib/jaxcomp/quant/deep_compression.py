"""Deep Compression storage: sparse relative indices + shared-weight indices, to bytes.

Each weight-shared layer becomes one byte string:

* a header (shape, ``k``, bit widths, flags, section sizes);
* the codebook: ``k`` float32 centroids;
* the **value stream**: one cluster index per non-zero weight, in row-major
  order — fixed ``ceil(log2 k)`` bits each, or Huffman-coded;
* the **relative-index stream** (CSR with relative indices, Han et al. 2016
  Fig. 2): for each non-zero, the number of zeros since the previous one, in
  ``rel_bits`` bits. A gap that does not fit uses the escape symbol
  ``2**rel_bits - 1`` = "skip that many zeros, no weight here" (Han's filler
  zero), repeated as needed — fixed width, or Huffman-coded.

With ``use_huffman=True`` each stream is Huffman-coded unless the code table
would make it larger than fixed width (a flag per stream in the header says which).

Other leaves (biases, unshared tensors) are stored as raw float32/original
bytes. :func:`compress` returns the blobs; the size of a model is the sum of
their lengths. :func:`decompress` rebuilds the params bit-exactly.

Example:
    >>> import numpy as np
    >>> from jaxcomp.quant.deep_compression import relative_gaps, gaps_to_positions
    >>> pos = np.array([1, 2, 12])           # non-zeros at flat positions 1, 2 and 12
    >>> g = relative_gaps(pos, rel_bits=3)   # escape symbol 7 = skip 7 zeros
    >>> g.tolist(), gaps_to_positions(g, rel_bits=3).tolist()
    ([1, 0, 7, 2], [1, 2, 12])
"""

from __future__ import annotations

import dataclasses
import math
import struct
from typing import Any

import jax
import numpy as np

from jaxcomp.core import paths as _paths
from jaxcomp.core.errors import ConfigError, check_range
from jaxcomp.quant import huffman

LAYER_HEADER = struct.Struct("<BBBBIII")  # ndim, value_bits, rel_bits, flags, k, nnz, n_gaps


def relative_gaps(positions: np.ndarray, rel_bits: int) -> np.ndarray:
    """Relative-index stream for ascending flat ``positions`` of the non-zeros.

    Each entry is the count of zeros before the next non-zero, if it is below
    ``escape = 2**rel_bits - 1``; a longer run emits ``escape`` (skip ``escape``
    zeros, no weight) as many times as needed first.
    """
    check_range("deep_compression.rel_bits", rel_bits, 1, 16)
    esc = (1 << rel_bits) - 1
    pos = np.asarray(positions, np.int64)
    if pos.size == 0:
        return np.zeros(0, np.int64)
    gaps = np.diff(np.concatenate([[-1], pos])) - 1
    n_esc = gaps // esc
    rem = gaps - n_esc * esc
    # Entry i becomes n_esc[i] escapes followed by rem[i].
    total = int((n_esc + 1).sum())
    out = np.full(total, esc, np.int64)
    ends = np.cumsum(n_esc + 1) - 1
    out[ends] = rem
    return out


def gaps_to_positions(gaps: np.ndarray, rel_bits: int) -> np.ndarray:
    """Invert :func:`relative_gaps`: the flat positions of the non-zeros."""
    esc = (1 << rel_bits) - 1
    g = np.asarray(gaps, np.int64)
    if g.size == 0:
        return np.zeros(0, np.int64)
    is_real = g != esc
    # Every real entry advances gap + 1 positions; an escape advances esc positions.
    step = np.where(is_real, g + 1, esc)
    return (np.cumsum(step) - 1)[is_real]


def pack_fixed(values: np.ndarray, bits: int) -> bytes:
    """Pack non-negative integers into ``bits`` bits each (MSB first), zero-padded."""
    v = np.asarray(values, np.int64)
    if v.size == 0:
        return b""
    if v.min() < 0 or v.max() >= (1 << bits):
        raise ConfigError(f"pack_fixed: values outside [0, {(1 << bits) - 1}] for {bits} bits")
    shifts = np.arange(bits - 1, -1, -1, dtype=np.int64)
    return np.packbits(((v[:, None] >> shifts) & 1).astype(np.uint8).ravel()).tobytes()


def unpack_fixed(blob: bytes, n: int, bits: int) -> np.ndarray:
    """Invert :func:`pack_fixed` for ``n`` values."""
    if n == 0:
        return np.zeros(0, np.int64)
    b = np.unpackbits(np.frombuffer(blob, np.uint8))[: n * bits].reshape(n, bits)
    return (b.astype(np.int64) << np.arange(bits - 1, -1, -1, dtype=np.int64)).sum(1)


def index_bits(k: int) -> int:
    """Bits per cluster index for ``k`` clusters (``ceil(log2 k)``, at least 1)."""
    return max(1, math.ceil(math.log2(k)))


@dataclasses.dataclass
class LayerBytes:
    """One encoded layer and the byte count of each section."""

    blob: bytes
    header: int
    codebook: int
    values: int
    gaps: int

    @property
    def total(self) -> int:
        return len(self.blob)


def encode_layer(centroids: Any, index: Any, *, rel_bits: int = 5,
                 use_huffman: bool = True) -> LayerBytes:
    """Encode one shared layer (``index == -1`` for pruned weights) to bytes."""
    c = np.asarray(centroids, np.float32)
    idx = np.asarray(index)
    k = len(c)
    flat = idx.ravel()
    pos = np.flatnonzero(flat >= 0)
    vals = flat[pos].astype(np.int64)
    gaps = relative_gaps(pos, rel_bits)
    vb = index_bits(k)
    v_blob, g_blob = pack_fixed(vals, vb), pack_fixed(gaps, rel_bits)
    flags = 0
    if use_huffman:
        # Each stream is Huffman-coded unless its code table makes it larger (tiny layers).
        hv, hg = huffman.encode(vals), huffman.encode(gaps)
        if len(hv) < len(v_blob):
            v_blob, flags = hv, flags | 1
        if len(hg) < len(g_blob):
            g_blob, flags = hg, flags | 2
    shape = struct.pack(f"<{idx.ndim}I", *idx.shape)
    sizes = struct.pack("<II", len(v_blob), len(g_blob))
    head = LAYER_HEADER.pack(idx.ndim, vb, rel_bits, flags, k, len(vals),
                             len(gaps)) + shape + sizes
    cb = c.tobytes()
    return LayerBytes(head + cb + v_blob + g_blob, len(head), len(cb), len(v_blob), len(g_blob))


def decode_layer(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Invert :func:`encode_layer`: ``(centroids, index)`` with ``-1`` for pruned."""
    ndim, vb, rel_bits, flags, k, nnz, n_gaps = LAYER_HEADER.unpack_from(blob)
    off = LAYER_HEADER.size
    shape = struct.unpack_from(f"<{ndim}I", blob, off)
    off += 4 * ndim
    nv, ng = struct.unpack_from("<II", blob, off)
    off += 8
    c = np.frombuffer(blob, np.float32, k, off).copy()
    off += 4 * k
    v_blob, g_blob = blob[off:off + nv], blob[off + nv:off + nv + ng]
    vals = huffman.decode(v_blob) if flags & 1 else unpack_fixed(v_blob, nnz, vb)
    gaps = huffman.decode(g_blob) if flags & 2 else unpack_fixed(g_blob, n_gaps, rel_bits)
    pos = gaps_to_positions(gaps, rel_bits)
    out = np.full(int(np.prod(shape)), -1, np.int32)
    out[pos] = vals
    return c, out.reshape(shape)


def _raw_bytes(x: Any) -> bytes:
    a = np.asarray(x)
    return a.tobytes()


@dataclasses.dataclass
class Compressed:
    """A compressed model: one blob per leaf, and what each section costs."""

    blobs: dict[str, bytes]
    layers: dict[str, LayerBytes]
    dtypes: dict[str, tuple[str, tuple[int, ...]]]

    @property
    def nbytes(self) -> int:
        """Total stored bytes (sum of every blob's length)."""
        return sum(len(b) for b in self.blobs.values())

    def report(self) -> dict[str, dict[str, int]]:
        """Per-leaf byte counts (sections for shared layers, raw size otherwise)."""
        out = {}
        for p, b in self.blobs.items():
            lay = self.layers.get(p)
            out[p] = ({"header": lay.header, "codebook": lay.codebook, "values": lay.values,
                       "gaps": lay.gaps, "total": lay.total} if lay else {"raw": len(b),
                                                                          "total": len(b)})
        return out


def compress(params: Any, sharing_state: Any, *, rel_bits: int = 5,
             use_huffman: bool = True) -> Compressed:
    """Encode params whose shared leaves are described by a weight-sharing state.

    Args:
      params: the model params (shared leaves are read from the state only).
      sharing_state: :func:`jaxcomp.quant.sharing.weight_sharing` state (or any
        ``{"layers": {path: {"centroids", "index"}}}``).
      rel_bits: bits per relative index (Han: 5 for FC layers, 8 for conv).
      use_huffman: Huffman-code the value and relative-index streams.

    Returns:
      A :class:`Compressed`; ``.nbytes`` is the stored size in bytes.
    """
    check_range("deep_compression.rel_bits", rel_bits, 1, 16)
    layers = sharing_state["layers"]
    blobs, encoded, dtypes = {}, {}, {}
    for p, x in _paths.flatten(params):
        dtypes[p] = (str(np.asarray(x).dtype), tuple(np.shape(x)))
        if p in layers:
            lay = encode_layer(layers[p]["centroids"], layers[p]["index"], rel_bits=rel_bits,
                               use_huffman=use_huffman)
            encoded[p], blobs[p] = lay, lay.blob
        else:
            blobs[p] = _raw_bytes(x)
    return Compressed(blobs, encoded, dtypes)


def decompress(compressed: Compressed, like: Any) -> Any:
    """Rebuild the params (shared leaves as ``centroids[index]``) in ``like``'s structure."""
    import jax.numpy as jnp

    def leaf(p, x):
        dtype, shape = compressed.dtypes[p]
        blob = compressed.blobs[p]
        if p in compressed.layers:
            c, idx = decode_layer(blob)
            w = np.where(idx >= 0, c[np.clip(idx, 0, len(c) - 1)], 0).astype(dtype)
            return jnp.asarray(w)
        return jnp.asarray(np.frombuffer(blob, dtype).reshape(shape))

    return _paths.map_with_path(leaf, like)


def dense_fp32_bytes(params: Any) -> int:
    """Bytes of every leaf stored as dense float32 (the baseline of the ratios)."""
    return int(sum(4 * np.size(x) for x in jax.tree.leaves(params)))
