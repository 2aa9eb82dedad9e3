"""Make every process of a multi-process run agree on a value that only process 0
can compute (e.g. which sweep runs are already finished in its results store).

Every process calls :func:`from_writer` at the same point of the program; the
value process 0 passes (anything JSON can encode) is returned everywhere. With
one process it is returned as it is, with no communication.

Example:
    >>> from_writer({"done": ["a1", "b2"]})
    {'done': ['a1', 'b2']}
"""

from __future__ import annotations

import json
from typing import Any

import jax
import numpy as np


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


__all__ = ["from_writer"]
