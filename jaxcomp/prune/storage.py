"""Sparse storage at rest: bitmask + values, and CSR with relative indices (Deep Compression).

* :func:`encode_bitmask` — one bit per element (``np.packbits``) plus the
  non-zero values in row-major order;
* :func:`encode_relative` — Han et al. 2016's format: each non-zero stores
  the gap since the previous one in ``index_bits`` bits; a gap larger than
  ``2**index_bits - 1`` is bridged by filler entries (index = max, value = 0);
  per row, a pointer into the value array (CSR).

Both decode back bit-exactly (:func:`decode`); :func:`nbytes` reports the
bytes at rest (index streams packed to their bit width). Encodings are dicts
of numpy arrays, so :func:`save` / :func:`restore` store them with orbax.

Example:
    >>> import numpy as np
    >>> w = np.array([[0., 1.5, 0., 0.], [0., 0., 0., -2.]], np.float32)
    >>> e = encode_bitmask(w)
    >>> bool((decode(e) == w).all()), nbytes(e)
    (True, 9)
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxcomp.core import paths
from jaxcomp.core.errors import ConfigError


def _stored(a: np.ndarray) -> np.ndarray:
    """Elements stored explicitly: non-zeros, and ``-0.0`` (so decoding is bit-exact)."""
    return (a != 0) | (np.signbit(a) if np.issubdtype(a.dtype, np.floating) else False)


def _numeric(w: Any, what: str) -> np.ndarray:
    a = np.asarray(w)
    if a.dtype.kind not in "biufc":
        raise ConfigError(f"{what}: w got {type(w).__name__} of dtype {a.dtype}; expected a "
                          "numeric array")
    return a


_KEYS = {0: ("shape", "bits", "values"), 1: ("shape", "index_bits", "gaps", "values",
                                              "row_ptr")}


def _check_encoding(e: Any, what: str) -> int:
    """The format tag of an encoding, after checking it holds that format's keys."""
    if not isinstance(e, Mapping) or "format" not in e:
        raise ConfigError(f"{what}: got {type(e).__name__} {str(e)[:60]}; expected an "
                          "encoding from encode_bitmask/encode_relative (keys 'format', "
                          "'shape', 'values', ...)")
    fmt = int(np.asarray(e["format"]))
    if fmt not in _KEYS:
        raise ConfigError(f"{what}: format tag {fmt}; allowed: 0 (bitmask), 1 (relative)")
    missing = [k for k in _KEYS[fmt] if k not in e]
    if missing:
        raise ConfigError(f"{what}: the encoding (format {fmt}) lacks keys {missing}")
    return fmt


def encode_bitmask(w: Any) -> dict[str, np.ndarray]:
    """``{"format", "shape", "bits", "values"}``: packed keep-bits and the non-zeros."""
    a = _numeric(w, "encode_bitmask")
    nz = _stored(a.reshape(-1))
    return {"format": np.array(0, np.int8), "shape": np.array(a.shape, np.int64),
            "bits": np.packbits(nz), "values": a.reshape(-1)[nz]}


def encode_relative(w: Any, index_bits: int = 5) -> dict[str, np.ndarray]:
    """CSR with relative (gap) indices of ``index_bits`` bits and filler zeros.

    Rows are the leading dimension (a vector is one row). ``row_ptr[r]`` is
    where row ``r`` starts in ``gaps``/``values``; filler entries (value 0)
    bridge gaps longer than ``2**index_bits - 1``.

    Example:
        >>> import numpy as np
        >>> e = encode_relative(np.array([0, 0, 0, 0, 0, 3.0, 0, 0, 0, 0, 0, 0, 4.0]), 2)
        >>> e["gaps"].tolist(), e["values"].tolist()
        ([3, 3, 3, 3, 1], [0.0, 3.0, 0.0, 0.0, 4.0])
    """
    if not isinstance(index_bits, int) or not 1 <= index_bits <= 16:
        raise ConfigError(f"index_bits: got {index_bits!r}; allowed integers 1..16")
    a = _numeric(w, "encode_relative")
    rows = a.reshape(a.shape[0], -1) if a.ndim >= 2 else a.reshape(1, -1)
    span = (1 << index_bits) - 1
    gaps, values, ptr = [], [], [0]
    for row in rows:
        pos = np.flatnonzero(_stored(row))
        prev = -1
        for i in pos:
            gap = int(i - prev)
            while gap > span:                 # filler: jump ``span`` with a zero value
                gaps.append(span)
                values.append(0)
                gap -= span
            gaps.append(gap)
            values.append(row[i])
            prev = int(i)
        ptr.append(len(gaps))
    return {"format": np.array(1, np.int8), "shape": np.array(a.shape, np.int64),
            "index_bits": np.array(index_bits, np.int8),
            "gaps": np.array(gaps, np.uint16), "values": np.array(values, a.dtype),
            "row_ptr": np.array(ptr, np.int64)}


def decode(e: Mapping[str, np.ndarray]) -> np.ndarray:
    """The dense array an encoding holds (bit-exact)."""
    fmt = _check_encoding(e, "decode")
    shape = tuple(int(s) for s in np.asarray(e["shape"]))
    values = np.asarray(e["values"])
    if fmt == 0:
        n = math.prod(shape)
        nz = np.unpackbits(np.asarray(e["bits"]), count=n).astype(bool)
        out = np.zeros(n, values.dtype)
        out[nz] = values
        return out.reshape(shape)
    nrows = shape[0] if len(shape) >= 2 else 1
    ncols = math.prod(shape) // max(nrows, 1) if shape else 1
    out = np.zeros((nrows, ncols), values.dtype)
    gaps, ptr = np.asarray(e["gaps"]).astype(np.int64), np.asarray(e["row_ptr"])
    for r in range(nrows):
        a, b = int(ptr[r]), int(ptr[r + 1])
        if b > a:
            pos = np.cumsum(gaps[a:b]) - 1
            keep = _stored(values[a:b])  # fillers hold +0.0; stored values never do
            out[r, pos[keep]] = values[a:b][keep]
    return out.reshape(shape)


def nbytes(e: Mapping[str, np.ndarray]) -> int:
    """Bytes at rest: values, plus packed bits (bitmask) or packed gaps + row pointers (CSR).

    Shapes and format tags (a few bytes per tensor) are not counted; row
    pointers are counted at 4 bytes each.
    """
    fmt = _check_encoding(e, "nbytes")
    values = np.asarray(e["values"])
    if fmt == 0:
        return int(values.nbytes + np.asarray(e["bits"]).nbytes)
    bits = int(e["index_bits"])
    return int(values.nbytes + math.ceil(len(e["gaps"]) * bits / 8) + 4 * len(e["row_ptr"]))


def encode_tree(params: Any, fmt: str = "bitmask", *, index_bits: int = 5,
                where: Any = None) -> dict[str, dict[str, np.ndarray]]:
    """Encode every leaf (``where=None``: all leaves; sparse kernels gain, small
    dense ones are stored as-is by the same format) as ``{path: encoding}``."""
    if fmt not in ("bitmask", "relative"):
        raise ConfigError(f"storage format: got {fmt!r}; allowed: 'bitmask', 'relative'")
    from jaxcomp.core.select import selected_paths

    chosen = set(selected_paths(params, where)) if where is not None else None
    out = {}
    for p, x in paths.flatten(params):
        if chosen is not None and p not in chosen:
            out[p] = {"format": np.array(2, np.int8), "shape": np.array(np.shape(x), np.int64),
                      "values": np.asarray(x).reshape(-1)}
        elif fmt == "bitmask":
            out[p] = encode_bitmask(x)
        else:
            out[p] = encode_relative(x, index_bits)
    return out


def decode_tree(encoded: Mapping[str, Mapping[str, np.ndarray]], like: Any) -> Any:
    """The params tree (shaped like ``like``) an :func:`encode_tree` result holds."""
    def dec(e):
        if int(e["format"]) == 2:
            return np.asarray(e["values"]).reshape(tuple(int(s) for s in e["shape"]))
        return decode(e)

    return paths.unflatten_like(like, {p: dec(e) for p, e in encoded.items()})


def tree_nbytes(encoded: Mapping[str, Mapping[str, np.ndarray]]) -> int:
    """Total bytes at rest of an :func:`encode_tree` result."""
    return sum(int(np.asarray(e["values"]).nbytes) if int(e["format"]) == 2 else nbytes(e)
               for e in encoded.values())


def save(directory: str, encoded: Mapping[str, Any]) -> None:
    """Write an encoding (or a dict of them) with orbax to ``directory`` (absolute path used)."""
    import orbax.checkpoint as ocp

    with ocp.StandardCheckpointer() as ck:  # closed: no event loop left to the GC
        ck.save(os.path.abspath(directory), _safe_keys(encoded), force=True)
        ck.wait_until_finished()


def restore(directory: str) -> dict[str, Any]:
    """Read back what :func:`save` wrote (numpy arrays, original keys)."""
    import orbax.checkpoint as ocp

    with ocp.StandardCheckpointer() as ck:
        tree = ck.restore(os.path.abspath(directory))
    return _unsafe_keys(_to_numpy(tree))


def _safe_keys(d):
    if isinstance(d, Mapping):
        return {k.replace("/", "|"): _safe_keys(v) for k, v in d.items()}
    return np.asarray(d)


def _unsafe_keys(d):
    if isinstance(d, Mapping):
        return {k.replace("|", "/"): _unsafe_keys(v) for k, v in d.items()}
    return d


def _to_numpy(d):
    if isinstance(d, Mapping):
        return {k: _to_numpy(v) for k, v in d.items()}
    return np.asarray(d)
