"""Canonical Huffman coding of integer symbol streams, to real bytes and back.

Deep Compression's last stage: the cluster indices and the sparse relative
indices are skewed, so a Huffman code stores them in fewer bits. This module
builds the code from the symbol counts, writes a self-describing byte string
(header + code lengths + packed bits) and decodes it back bit-exactly. Sizes
reported elsewhere are ``len()`` of these bytes, never an estimate.

Format (all little-endian): ``n_symbols: u32``, ``n_values: u32``,
``min_symbol: i32``, then one ``u8`` code length per symbol in
``[min_symbol, min_symbol + n_symbols)``, then the codes packed MSB-first.
The code is canonical, so the lengths alone define it.

Example:
    >>> import numpy as np
    >>> from jaxcomp.quant.huffman import code_lengths, encode, decode
    >>> data = np.array([0] * 45 + [1] * 13 + [2] * 12 + [3] * 16 + [4] * 9 + [5] * 5)
    >>> code_lengths(np.bincount(data)).tolist()
    [1, 3, 3, 3, 4, 4]
    >>> blob = encode(data)
    >>> bool((decode(blob) == data).all()), len(blob)
    (True, 46)
"""

from __future__ import annotations

import heapq
import struct

import numpy as np

from jaxcomp.core.errors import ConfigError

MAX_CODE_LENGTH = 32
HEADER = struct.Struct("<IIi")


def code_lengths(counts: np.ndarray) -> np.ndarray:
    """Huffman code length of each symbol from its count (0 for absent symbols).

    Ties in the merge order are broken by (count, creation order), so the
    result is deterministic. A single present symbol gets length 1.
    """
    counts = np.asarray(counts, np.int64)
    if counts.ndim != 1 or (counts < 0).any():
        raise ConfigError(f"huffman.counts: expected a 1-D array of counts >= 0; got {counts!r}")
    lengths = np.zeros(len(counts), np.int64)
    present = np.flatnonzero(counts)
    if len(present) == 0:
        return lengths
    if len(present) == 1:
        lengths[present[0]] = 1
        return lengths
    # Heap of (count, order, members); merging adds 1 to every member's length.
    heap = [(int(counts[s]), i, [int(s)]) for i, s in enumerate(present)]
    heapq.heapify(heap)
    order = len(heap)
    while len(heap) > 1:
        c1, _, m1 = heapq.heappop(heap)
        c2, _, m2 = heapq.heappop(heap)
        for s in m1:
            lengths[s] += 1
        for s in m2:
            lengths[s] += 1
        heapq.heappush(heap, (c1 + c2, order, m1 + m2))
        order += 1
    if lengths.max() > MAX_CODE_LENGTH:
        raise ConfigError(f"huffman: a code length of {lengths.max()} exceeds "
                          f"{MAX_CODE_LENGTH} bits (too skewed a distribution)")
    return lengths


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """Canonical code words (as integers) for the given lengths (0 = no code)."""
    lengths = np.asarray(lengths, np.int64)
    codes = np.zeros(len(lengths), np.int64)
    order = sorted((int(length), s) for s, length in enumerate(lengths) if length > 0)
    code, prev = 0, 0
    for i, (length, s) in enumerate(order):
        if i:
            code = (code + 1) << (length - prev)
        codes[s] = code
        prev = length
    return codes


def _pack_bits(codes: np.ndarray, lengths: np.ndarray) -> bytes:
    """Concatenate variable-length codes (MSB first) into bytes, zero-padded."""
    if len(codes) == 0:
        return b""
    maxlen = int(lengths.max())
    # Bit matrix (n, maxlen), right-aligned codes; keep each row's last `length` bits.
    shifts = np.arange(maxlen - 1, -1, -1, dtype=np.int64)
    bits = ((codes[:, None] >> shifts[None, :]) & 1).astype(np.uint8)
    keep = np.arange(maxlen)[None, :] >= (maxlen - lengths)[:, None]
    return np.packbits(bits[keep]).tobytes()


def encode(symbols: np.ndarray) -> bytes:
    """Huffman-encode a 1-D stream of integers into a self-describing byte string."""
    s = np.asarray(symbols)
    if s.ndim != 1 or (s.size and not np.issubdtype(s.dtype, np.integer)):
        raise ConfigError(f"huffman.symbols: expected a 1-D integer array; got dtype "
                          f"{s.dtype} shape {s.shape}")
    s = s.astype(np.int64)
    lo = int(s.min()) if s.size else 0
    counts = np.bincount(s - lo) if s.size else np.zeros(0, np.int64)
    lengths = code_lengths(counts)
    codes = canonical_codes(lengths)
    header = HEADER.pack(len(counts), len(s), lo) + lengths.astype(np.uint8).tobytes()
    return header + _pack_bits(codes[s - lo], lengths[s - lo])


def decode(blob: bytes) -> np.ndarray:
    """Decode :func:`encode`'s output back to the int64 symbol stream."""
    if len(blob) < HEADER.size:
        raise ConfigError(f"huffman.decode: {len(blob)} bytes is shorter than the header")
    n_sym, n_val, lo = HEADER.unpack_from(blob)
    lengths = np.frombuffer(blob, np.uint8, n_sym, HEADER.size).astype(np.int64)
    if n_val == 0:
        return np.zeros(0, np.int64)
    codes = canonical_codes(lengths)
    # Canonical decoding tables: per length, the first code and the symbols in order.
    order = sorted((int(length), s) for s, length in enumerate(lengths) if length > 0)
    syms_sorted = np.array([s for _, s in order], np.int64)
    maxlen = int(lengths.max())
    first_code = np.full(maxlen + 2, -1, np.int64)
    first_index = np.zeros(maxlen + 2, np.int64)
    count_at = np.bincount(lengths[lengths > 0], minlength=maxlen + 2)
    idx = 0
    for length in range(1, maxlen + 1):
        if count_at[length]:
            first_code[length] = codes[syms_sorted[idx]]
            first_index[length] = idx
        idx += count_at[length]
    bits = np.unpackbits(np.frombuffer(blob, np.uint8, offset=HEADER.size + n_sym))
    bits_list = bits.tolist()
    out = np.empty(n_val, np.int64)
    pos = 0
    fc, fi, cnt = first_code.tolist(), first_index.tolist(), count_at.tolist()
    sym_list = syms_sorted.tolist()
    nbits = len(bits_list)
    for i in range(n_val):
        code, length = 0, 0
        while True:
            if pos >= nbits:
                raise ConfigError("huffman.decode: the bit stream ended early (corrupt data)")
            code = (code << 1) | bits_list[pos]
            pos += 1
            length += 1
            if length > maxlen:
                raise ConfigError("huffman.decode: no code matches (corrupt data)")
            if cnt[length] and 0 <= code - fc[length] < cnt[length]:
                out[i] = sym_list[fi[length] + code - fc[length]] + lo
                break
    return out


def encoded_bits(symbols: np.ndarray) -> int:
    """The payload size in bits (code lengths times counts), without the header."""
    s = np.asarray(symbols, np.int64)
    if s.size == 0:
        return 0
    counts = np.bincount(s - s.min())
    return int((code_lengths(counts) * counts).sum())
