"""Sparse export with real bytes: N:M compressed values + packed indices, and
unstructured kernels through :mod:`jaxcomp.prune.storage` (bitmask or CSR).

**N:M layout** (the one sparse tensor cores read for 2:4): the kernel ``(in, out)``
is stored as its transpose ``(out, in)`` (row-major, the reduction dimension
last), and every group of ``M`` consecutive inputs keeps ``N`` values in
position order plus ``N`` indices of ``ceil(log2 M)`` bits (2 bits for 2:4 and
1:4, 3 bits for 4:8), packed little-end-first into bytes. A group with fewer
than ``N`` stored values (weights that are exactly 0) is filled with zeros at
the lowest free positions, so decoding is bit-exact (``-0.0`` included).

Example:
    >>> import numpy as np
    >>> w = np.array([[1., 0.], [0., 2.], [3., 0.], [0., 4.]], np.float32)  # (in=4, out=2)
    >>> e = encode_nm(w, 2, 4)
    >>> e["values"].tolist(), e["indices"].tolist()
    ([[1.0, 3.0], [2.0, 4.0]], [216])
    >>> bool((decode_nm(e) == w).all()), nm_nbytes(e)
    (True, 17)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxcomp.core import paths
from jaxcomp.core.errors import ConfigError
from jaxcomp.prune import storage
from jaxcomp.prune.oneshot.layer import parse_nm


def index_bits(m: int) -> int:
    """Bits per kept value's in-group index: ``ceil(log2 m)`` (at least 1)."""
    return max(1, math.ceil(math.log2(m)))


def _pack(idx: np.ndarray, bits: int) -> np.ndarray:
    """Pack small unsigned ints (each < 2**bits) into bytes, first value in the low bits."""
    flat = idx.reshape(-1).astype(np.uint8)
    b = ((flat[:, None] >> np.arange(bits, dtype=np.uint8)) & 1).astype(np.uint8)
    return np.packbits(b.reshape(-1), bitorder="little")


def _unpack(buf: np.ndarray, bits: int, count: int) -> np.ndarray:
    b = np.unpackbits(np.asarray(buf, np.uint8), count=count * bits, bitorder="little")
    return (b.reshape(count, bits) << np.arange(bits, dtype=np.uint8)).sum(1).astype(np.uint8)


def encode_nm(w: Any, n: int, m: int, *, path: str = "<layer>") -> dict[str, np.ndarray]:
    """Compress an N:M-sparse ``(in, out)`` kernel (see the module docstring).

    Raises:
      ConfigError: not rank 2, ``M`` not dividing ``in``, or a group with more than
        ``N`` stored values (the kernel is not N:M sparse).
    """
    n, m = parse_nm((n, m), f"{path}: nm")
    a = np.asarray(w)
    if a.ndim != 2 or a.shape[0] % m:
        raise ConfigError(f"{path}: encode_nm: got shape {a.shape}; expected an (in, out) "
                          f"kernel whose input dimension is a multiple of M={m}")
    wt = a.T                                                    # (out, in)
    g = wt.reshape(wt.shape[0], -1, m)                          # (out, groups, m)
    stored = storage._stored(g)
    cnt = stored.sum(-1)
    if cnt.max(initial=0) > n:
        o, gi = np.argwhere(cnt > n)[0]
        raise ConfigError(f"{path}: encode_nm: not {n}:{m} sparse: output {o}, inputs "
                          f"{gi * m}..{gi * m + m - 1} hold {cnt[o, gi]} non-zeros "
                          f"(allowed at most {n})")
    # stored positions first (in order), then the lowest free ones; keep N, sort by position
    order = np.argsort(~stored, axis=-1, kind="stable")[..., :n]
    idx = np.sort(order, axis=-1)
    vals = np.take_along_axis(g, idx, -1)
    return {"format": np.array(3, np.int8), "shape": np.array(a.shape, np.int64),
            "nm": np.array([n, m], np.int64),
            "values": vals.reshape(wt.shape[0], -1),
            "indices": _pack(idx, index_bits(m))}


def decode_nm(e: Mapping[str, np.ndarray]) -> np.ndarray:
    """The dense ``(in, out)`` kernel an :func:`encode_nm` result holds (bit-exact)."""
    if not isinstance(e, Mapping) or int(np.asarray(e.get("format", -1))) != 3:
        raise ConfigError(f"decode_nm: got {type(e).__name__}; expected an encode_nm result "
                          "(format 3, keys shape, nm, values, indices)")
    n_in, n_out = (int(s) for s in e["shape"])
    n, m = (int(v) for v in e["nm"])
    vals = np.asarray(e["values"]).reshape(n_out, n_in // m, n)
    idx = _unpack(e["indices"], index_bits(m), vals.size).reshape(vals.shape)
    g = np.zeros((n_out, n_in // m, m), vals.dtype)
    np.put_along_axis(g, idx.astype(np.int64), vals, -1)
    return g.reshape(n_out, n_in).T


def nm_nbytes(e: Mapping[str, np.ndarray]) -> int:
    """Bytes at rest of an N:M encoding: values plus packed indices."""
    return int(np.asarray(e["values"]).nbytes + np.asarray(e["indices"]).nbytes)


def export_sparse(params: Any, kernels: Any, *, nm: Any = None, fmt: str = "bitmask",
                  index_bits_csr: int = 5) -> dict[str, dict[str, np.ndarray]]:
    """``{path: encoding}`` for every leaf: the listed ``kernels`` paths N:M-packed (when
    ``nm`` is given) or by ``storage`` in ``fmt`` (``"bitmask"`` / ``"relative"``);
    every other leaf dense (format 2)."""
    nmp = parse_nm(nm, "export_sparse.nm")
    if fmt not in ("bitmask", "relative"):
        raise ConfigError(f"export_sparse.fmt: got {fmt!r}; allowed: 'bitmask', 'relative'")
    leaves = paths.path_dict(params)
    chosen = set(kernels)
    missing = sorted(chosen - set(leaves))
    if missing:
        raise ConfigError(f"export_sparse.kernels: {missing[:3]} not in params")
    out = {}
    for p, x in leaves.items():
        a = np.asarray(x)
        if p not in chosen:
            out[p] = {"format": np.array(2, np.int8), "shape": np.array(a.shape, np.int64),
                      "values": a.reshape(-1)}
        elif nmp:
            out[p] = encode_nm(a, *nmp, path=p)
        elif fmt == "bitmask":
            out[p] = storage.encode_bitmask(a)
        else:
            out[p] = storage.encode_relative(a.T, index_bits_csr)  # rows = outputs
            out[p]["transposed"] = np.array(1, np.int8)
    return out


def decode_one(e: Mapping[str, np.ndarray]) -> np.ndarray:
    """Decode any encoding :func:`export_sparse` writes."""
    fmt = int(np.asarray(e["format"]))
    if fmt == 3:
        return decode_nm(e)
    if fmt == 2:
        return np.asarray(e["values"]).reshape(tuple(int(s) for s in e["shape"]))
    d = storage.decode({k: v for k, v in e.items() if k != "transposed"})
    return d.T if int(np.asarray(e.get("transposed", 0))) else d


def import_sparse(encoded: Mapping[str, Mapping[str, np.ndarray]], like: Any) -> Any:
    """The params tree (shaped like ``like``) an :func:`export_sparse` result holds."""
    return paths.unflatten_like(like, {p: decode_one(e) for p, e in encoded.items()})


def sparse_nbytes(encoded: Mapping[str, Mapping[str, np.ndarray]]) -> int:
    """Total bytes at rest of an :func:`export_sparse` result."""
    tot = 0
    for e in encoded.values():
        fmt = int(np.asarray(e["format"]))
        tot += (nm_nbytes(e) if fmt == 3 else int(np.asarray(e["values"]).nbytes) if fmt == 2
                else storage.nbytes({k: v for k, v in e.items() if k != "transposed"}))
    return tot
