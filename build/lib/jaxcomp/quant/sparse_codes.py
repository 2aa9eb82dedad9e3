"""Sparse integer codes: a pruned-then-quantized leaf stored as a bitmask of its
non-zero codes plus those codes only, instead of every code.

A symmetric integer leaf's code 0 is exactly the weight 0, so a pruned kernel's
zeros need not be stored: ``{"mask": packed bits (code != 0), "q": the non-zero
codes (int8; ≤ 4 bits packed two per byte), "scale", "meta": [bits, *shape]}``.
For ``b``-bit codes that is smaller than the dense codes once more than ``1/b``
of them are zero (int8: 12.5%), and :func:`sparsify` converts exactly those
leaves. :func:`jaxcomp.quant.export.codes` reads both forms, so dequantization,
the integer model and ``save``/``restore`` work unchanged and give the same
numbers as the dense export.

Example:
    >>> import numpy as np
    >>> from jaxcomp.quant.export import codes, export_int, int_bytes
    >>> w = np.zeros((64, 8), np.float32); w[::10] = 1.0          # 90% zeros
    >>> dense = export_int({"k": w}, 8, where=["k"])
    >>> sparse = sparsify(dense)
    >>> is_sparse(sparse["k"]), int_bytes(sparse), int_bytes(dense)
    (True, 164, 544)
    >>> bool((codes(sparse["k"]) == dense["k"]["q"]).all())
    True
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def is_sparse(leaf: Any) -> bool:
    """True for an exported leaf in the sparse (bitmask + non-zero codes) form."""
    return isinstance(leaf, dict) and "mask" in leaf and "q" in leaf


def sparse_bytes(n: int, nonzero: int, bits: int) -> int:
    """Bytes of the mask and codes of a sparse leaf with ``n`` codes, ``nonzero`` non-zero."""
    return math.ceil(n / 8) + (math.ceil(nonzero / 2) if bits <= 4 else nonzero)


def dense_bytes(n: int, bits: int) -> int:
    """Bytes of ``n`` dense codes (≤ 4 bits: two per byte)."""
    return math.ceil(n / 2) if bits <= 4 else n


def to_sparse(leaf: dict[str, Any]) -> dict[str, Any]:
    """The sparse form of one symmetric exported leaf (whatever its zero fraction)."""
    from jaxcomp.quant.export import codes

    return _pack(leaf, np.asarray(codes(leaf)))


def _pack(leaf: dict[str, Any], q: np.ndarray) -> dict[str, Any]:
    """The sparse form of ``leaf`` whose unpacked codes are ``q``."""
    from jaxcomp.quant.export import leaf_bits, pack_int4

    bits, shape = leaf_bits(leaf), q.shape
    flat = q.astype(np.int8).reshape(-1)
    keep = flat != 0
    values = flat[keep]
    return {"mask": np.packbits(keep), "q": pack_int4(values) if bits <= 4 else values,
            "scale": np.asarray(leaf["scale"]), "meta": np.asarray([bits, *shape], np.int32)}


def from_sparse(leaf: dict[str, Any]) -> np.ndarray:
    """The dense int8 codes (original shape) of a sparse leaf."""
    from jaxcomp.quant.export import unpack_int4

    meta = np.asarray(leaf["meta"])
    bits, shape = int(meta[0]), tuple(int(v) for v in meta[1:])
    n = math.prod(shape)
    keep = np.unpackbits(np.asarray(leaf["mask"]), count=n).astype(bool)
    nnz = int(keep.sum())
    q = np.asarray(leaf["q"])
    values = unpack_int4(q, (nnz,)) if bits <= 4 else q.astype(np.int8)
    out = np.zeros(n, np.int8)
    out[keep] = values
    return out.reshape(shape)


def sparsify(qtree: Any) -> Any:
    """Every symmetric exported leaf of ``qtree`` whose sparse form is smaller, converted.

    Asymmetric leaves (a zero point: code 0 is not the weight 0) and float leaves
    are kept as they are.
    """
    from jaxcomp.quant.export import codes, is_qleaf, leaf_bits

    def walk(node: Any) -> Any:
        if is_qleaf(node):
            if "zero_point" in node or is_sparse(node):
                return node
            q = np.asarray(codes(node))
            bits = leaf_bits(node)
            if sparse_bytes(q.size, int(np.count_nonzero(q)), bits) < dense_bytes(q.size, bits):
                return _pack(node, q)  # the codes are unpacked once
            return node
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        return node

    return walk(qtree)


__all__ = ["dense_bytes", "from_sparse", "is_sparse", "sparse_bytes", "sparsify", "to_sparse"]
