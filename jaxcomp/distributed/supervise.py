"""A multi-process job run under a supervising parent, so that being stopped
because another process died ends in one clear line instead of a bare abort.

When one process of a ``jax.distributed`` run dies, JAX's coordination service
aborts the survivors (``SIGABRT`` and a C++ stack trace). ``jaxcomp train``,
``jaxcomp sweep`` and ``python -m jaxcomp.distributed.worker`` therefore run a
multi-process job in a child process (marked by ``JAXCOMP_SUPERVISED=1``) that
dies with its parent (Linux ``PR_SET_PDEATHSIG``), and the parent turns the
child's abort into exit status 3 and an ``error: distributed: ...`` message.
Results stay whole either way: the store and checkpoints are written
atomically by process 0, so a rerun of the same command resumes.

Example:
    >>> import os
    >>> needs_supervisor(None, None, None, env={})     # a single process: no
    False
    >>> needs_supervisor("127.0.0.1:5000", 2, 1, env={})
    True
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence

from jaxcomp.core.errors import ConfigError

SUPERVISED = "JAXCOMP_SUPERVISED"
STOPPED_BY_PEER = 3


def needs_supervisor(coordinator: str | None, num_processes: int | None,
                     process_id: int | None, *, env: Mapping[str, str] | None = None) -> bool:
    """True for a multi-process run not already running under a supervisor."""
    from jaxcomp.distributed.multihost import resolve

    env = os.environ if env is None else env
    if env.get(SUPERVISED):
        return False
    try:
        group = resolve(coordinator, num_processes, process_id, env=env)
    except ConfigError:
        return False  # the job itself reports the bad flags
    return group is not None and group.num_processes > 1


def _die_with_parent() -> None:
    """In the child: get SIGKILL when the supervising parent dies (Linux), never orphaned."""
    import ctypes

    try:
        ctypes.CDLL(None).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def supervise(module: str, argv: Sequence[str], process_id: int | None,
              prefix: str = "error") -> int:
    """Run ``python -m module argv...`` as a supervised child; return its exit status,
    or :data:`STOPPED_BY_PEER` (with a one-line message) if it was aborted."""
    child = subprocess.Popen([sys.executable, "-m", module, *argv],
                             env={**os.environ, SUPERVISED: "1"},
                             preexec_fn=_die_with_parent if sys.platform == "linux" else None)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda s, _f: child.send_signal(s))
    rc = child.wait()
    if rc < 0 or rc == 134:  # killed by a signal (SIGABRT from the coordination service)
        what = f"signal {-rc}" if rc < 0 else f"exit status {rc}"
        pid = process_id if process_id is not None else os.environ.get("JAX_PROCESS_ID", "?")
        print(f"{prefix}: distributed: process {pid} was stopped ({what}) by JAX's "
              "coordination service — another process of this run died or stopped "
              "answering; finished results are kept (process 0 writes each one whole); "
              "rerun the same command to resume", file=sys.stderr, flush=True)
        return STOPPED_BY_PEER
    return rc


__all__ = ["STOPPED_BY_PEER", "SUPERVISED", "needs_supervisor", "supervise"]
