"""Make every process of a multi-process run agree on a value that only process 0
can compute (e.g. which sweep runs are already finished in its results store),
and check that all processes were started with the same job.

Every process calls :func:`from_writer` at the same point of the program; the
value process 0 passes (anything JSON can encode) is returned everywhere. With
one process it is returned as it is, with no communication.

Example:
    >>> from_writer({"done": ["a1", "b2"]})
    {'done': ['a1', 'b2']}
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import jax
import numpy as np

from jaxcomp.core.errors import ConfigError


def from_writer(value: Any) -> Any:
    """Process 0's ``value`` on every process (a collective: all processes must call it)."""
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils

    data = np.frombuffer(json.dumps(value).encode(), np.uint8)
    size = int(multihost_utils.broadcast_one_to_all(np.int32(len(data))))
    buf = np.zeros(size, np.uint8)
    if jax.process_index() == 0:
        buf[:] = data
    buf = np.asarray(multihost_utils.broadcast_one_to_all(buf), np.uint8)
    return json.loads(buf.tobytes().decode())


def check_same(what: str, value: Any) -> None:
    """Raise :class:`ConfigError` on every process unless all processes pass equal
    ``value`` s (e.g. the sweep's hash and mesh: every process must be started with
    the same config, overrides and flags). A collective: all processes must call it.

    Example:
        >>> check_same("sweep", {"hash": "abc", "mesh": {"sweep": 1}})  # one process: no-op
    """
    if jax.process_count() == 1:
        return
    from jax.experimental import multihost_utils

    text = json.dumps(value, sort_keys=True, default=str)
    digest = np.frombuffer(hashlib.sha256(text.encode()).digest()[:8], np.int64)
    alld = np.asarray(multihost_utils.process_allgather(digest)).reshape(-1)
    if np.all(alld == alld[0]):
        return
    odd = [i for i, d in enumerate(alld) if d != alld[0]]
    raise ConfigError(
        f"distributed: processes {odd} were started with a different {what} than process 0 "
        f"(this is process {jax.process_index()}: {text[:300]}); start every process with the "
        "same config, --set/--grid overrides and --mesh")


__all__ = ["check_same", "from_writer"]
