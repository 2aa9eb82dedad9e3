"""A multi-process job run under a supervising parent, so that being stopped
because another process died ends in one clear line instead of a bare abort.

When one process of a ``jax.distributed`` run dies, JAX's coordination service
aborts the survivors (``SIGABRT`` and a C++ stack trace). ``jaxcomp train``,
``jaxcomp sweep`` and ``python -m jaxcomp.distributed.worker`` therefore run a
multi-process job in a child process (marked by ``JAXCOMP_SUPERVISED=1``) that
dies with its parent (:func:`die_with_supervisor`), and the parent turns the
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
from typing import Any

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


SUPERVISOR_PID = "JAXCOMP_SUPERVISOR_PID"


def die_with_supervisor() -> None:
    """In a supervised job, first thing: get SIGKILL when the supervisor dies (Linux
    ``PR_SET_PDEATHSIG``), so the job is never orphaned; exit at once if it is
    already gone. A no-op outside a supervised job. (Done in the job rather than
    in a ``preexec_fn``, which would fork a multithreaded JAX process.)"""
    parent = os.environ.get(SUPERVISOR_PID)
    if not os.environ.get(SUPERVISED) or not parent:
        return
    if sys.platform == "linux":
        import ctypes

        try:
            ctypes.CDLL(None).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != int(parent):  # the supervisor died before the prctl above
        os._exit(128 + int(signal.SIGKILL))


def supervise(module: str, argv: Sequence[str], process_id: int | None,
              prefix: str = "error") -> int:
    """Run ``python -m module argv...`` as a supervised child; return its exit status,
    or :data:`STOPPED_BY_PEER` (with a one-line message) if it was aborted."""
    child = subprocess.Popen([sys.executable, "-m", module, *argv],
                             env={**os.environ, SUPERVISED: "1",
                                  SUPERVISOR_PID: str(os.getpid())})
    previous = {sig: signal.signal(sig, lambda s, _f: child.send_signal(s))
                for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        rc = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    pid = process_id if process_id is not None else os.environ.get("JAX_PROCESS_ID", "?")
    if rc in (-signal.SIGABRT, 134):  # the coordination service aborts survivors
        print(stopped_by_peer_message(pid, f"signal {signal.SIGABRT.value}", prefix),
              file=sys.stderr, flush=True)
        return STOPPED_BY_PEER
    if rc < 0:  # killed from outside (SIGKILL, SIGTERM, ...): say so, not "a peer died"
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = ""
        print(f"{prefix}: distributed: process {pid} was killed by signal {-rc} {name}; "
              "finished results are kept (process 0 writes each one whole); rerun the same "
              "command on every process to resume", file=sys.stderr, flush=True)
        return 128 - rc
    return rc


def stopped_by_peer_message(pid: Any, what: str, prefix: str = "error") -> str:
    """The one line a process prints when a peer's death stopped it."""
    return (f"{prefix}: distributed: process {pid} was stopped ({what}) by JAX's "
            "coordination service — another process of this run died or stopped answering; "
            "finished results are kept (process 0 writes each one whole); rerun the same "
            "command to resume")


PEER_FAILURE_MARKERS = ("Gloo", "gloo", "Connection closed by peer", "Connection reset by peer",
                        "coordination service", "heartbeat", "DEADLINE_EXCEEDED",
                        "UNAVAILABLE")


def exit_on_peer_failure(error: BaseException, prefix: str = "error") -> None:
    """If ``error`` is a peer's death seen in a collective, print one line and exit
    with :data:`STOPPED_BY_PEER` (skipping JAX's shutdown barrier, which the dead peer
    would never reach); otherwise return, for the caller to re-raise."""
    if not is_peer_failure(error):
        return
    import jax

    print(stopped_by_peer_message(jax.process_index(), f"{type(error).__name__} in a "
                                  "collective", prefix), file=sys.stderr, flush=True)
    os._exit(STOPPED_BY_PEER)


def is_peer_failure(error: BaseException) -> bool:
    """True for an exception a multi-process run raises when another process died
    mid-collective (e.g. a gloo all-reduce whose peer closed its connection)."""
    import jax

    try:
        multi = jax.process_count() > 1
    except Exception:  # the backend never started
        return False
    text = f"{type(error).__name__}: {error}"
    return multi and any(m in text for m in PEER_FAILURE_MARKERS)


__all__ = ["STOPPED_BY_PEER", "SUPERVISED", "die_with_supervisor", "exit_on_peer_failure",
           "is_peer_failure",
           "needs_supervisor", "stopped_by_peer_message", "supervise"]
