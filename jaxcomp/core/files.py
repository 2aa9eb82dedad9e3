"""Crash-safe JSON files: write to a temporary file beside the target, fsync, rename.

A reader sees the old file or the new one, never half of one — what checkpoints'
checksums and histories, sweep manifests and command results all need.

Example:
    >>> import json, os, tempfile
    >>> import numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "sub", "r.json")
    >>> write_json_atomic(path, {"acc": np.float32(0.5), "per_seed": np.arange(2)},
    ...                   default=json_default)
    >>> json.load(open(path))
    {'acc': 0.5, 'per_seed': [0, 1]}
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from typing import Any


def json_default(x: Any) -> Any:
    """JSON for numpy / jax values: scalars as numbers, arrays as (nested) lists."""
    import numpy as np

    if isinstance(x, np.generic):
        return x.item()
    if hasattr(x, "tolist"):
        return x.tolist()
    return repr(x)


def write_json_atomic(path: str | os.PathLike, obj: Any, *,
                      default: Callable[[Any], Any] = str) -> None:
    """Write ``obj`` as JSON to ``path`` (its folder is created) via a temporary file,
    ``fsync`` and an atomic rename; ``default`` converts what ``json`` cannot."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=default)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def file_digests(root: str | os.PathLike) -> dict[str, str]:
    """SHA-256 of every file under ``root``, keyed by its path relative to ``root``
    (how checkpoints are checked before they are read).

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "a").write_bytes(b"")
        >>> file_digests(d)["a"][:8]
        'e3b0c442'
    """
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in sorted(files):
            full = os.path.join(dirpath, name)
            with open(full, "rb") as f:
                out[os.path.relpath(full, root)] = hashlib.sha256(f.read()).hexdigest()
    return out
