"""Several processes (hosts) as one JAX program: ``jax.distributed.initialize``
from flags or environment variables, with a bounded wait; who writes results.

Every process runs the same program. Process 0 hosts the coordinator; the others
connect to it. Before JAX's own initialization, jaxcomp runs a small TCP
rendezvous on the coordinator's port + 1: every process checks in within
``timeout_s`` seconds, or each raises a :class:`ConfigError` naming the
coordinator, the process id and the missing peers — instead of JAX's abort with
a C++ stack trace (or a 5-minute wait) when the coordinator never answers.

Environment variables (used when the flag is not given): ``JAX_COORDINATOR_ADDRESS``
(``host:port``), ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``. With none of them
set and no flags, the run is single-process (nothing to initialize); on Cloud
TPU, Slurm or Open MPI, pass ``auto=True`` to let JAX detect everything.

When a process dies mid-run, JAX's coordination service stops the others after
``heartbeat_s`` seconds at most (they exit with a non-zero status and write
nothing: results are written only at the end, by process 0, atomically).

Example:
    >>> from jaxcomp.distributed.multihost import resolve, is_writer
    >>> resolve(None, None, None, env={}) is None      # nothing given: one process
    True
    >>> resolve("10.0.0.1:1234", 2, 1, env={}).process_id
    1
    >>> is_writer()
    True
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
import time
from collections.abc import Mapping

from jaxcomp.core.errors import ConfigError

ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"


@dataclasses.dataclass(frozen=True)
class ProcessGroup:
    """Where the coordinator is and who this process is."""

    coordinator: str
    num_processes: int
    process_id: int

    @property
    def host(self) -> str:
        return self.coordinator.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.coordinator.rsplit(":", 1)[1])


def _int(what: str, value: object) -> int:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{what}: got {value!r}; expected an integer") from None


def resolve(coordinator: str | None, num_processes: int | None, process_id: int | None, *,
            env: Mapping[str, str] | None = None) -> ProcessGroup | None:
    """Fill missing values from the environment and validate; ``None`` = one process."""
    env = os.environ if env is None else env
    coordinator = coordinator or env.get(ENV_COORDINATOR) or None
    if num_processes is None and env.get(ENV_NUM_PROCESSES):
        num_processes = _int(ENV_NUM_PROCESSES, env[ENV_NUM_PROCESSES])
    if process_id is None and env.get(ENV_PROCESS_ID):
        process_id = _int(ENV_PROCESS_ID, env[ENV_PROCESS_ID])
    if coordinator is None and num_processes in (None, 1) and process_id in (None, 0):
        return None
    if coordinator is None:
        raise ConfigError(f"distributed.coordinator: not given; pass --coordinator HOST:PORT "
                          f"or set ${ENV_COORDINATOR} (the address of process 0)")
    host, sep, port = coordinator.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65535:
        raise ConfigError(f"distributed.coordinator: got {coordinator!r}; expected HOST:PORT "
                          "with a port in 1..65534 (port + 1 is used for the rendezvous)")
    if num_processes is None:
        raise ConfigError(f"distributed.num_processes: not given; pass --num-processes N or "
                          f"set ${ENV_NUM_PROCESSES}")
    num_processes = _int("distributed.num_processes", num_processes)
    if num_processes < 1:
        raise ConfigError(f"distributed.num_processes: got {num_processes}; must be >= 1")
    if process_id is None:
        raise ConfigError(f"distributed.process_id: not given; pass --process-id I or set "
                          f"${ENV_PROCESS_ID} (0 on the coordinator)")
    process_id = _int("distributed.process_id", process_id)
    if not 0 <= process_id < num_processes:
        raise ConfigError(f"distributed.process_id: got {process_id}; allowed range "
                          f"[0, {num_processes - 1}] for num_processes={num_processes}")
    return ProcessGroup(coordinator, num_processes, process_id)


def rendezvous(group: ProcessGroup, timeout_s: float) -> None:
    """Wait until all processes have checked in on ``port + 1``, or raise ConfigError.

    Process 0 listens; the others connect (retrying) and wait for its go-ahead.
    """
    deadline = time.monotonic() + timeout_s
    port = group.port + 1
    if group.process_id == 0:
        _serve(group, port, deadline, timeout_s)
    else:
        _join(group, port, deadline, timeout_s)


def _serve(group: ProcessGroup, port: int, deadline: float, timeout_s: float) -> None:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        srv.bind(("", port))
    except OSError as e:
        srv.close()
        raise ConfigError(f"distributed.coordinator: process 0 cannot listen on port {port} "
                          f"(coordinator port + 1) for the rendezvous: {e}") from None
    srv.listen(group.num_processes)
    peers: dict[int, socket.socket] = {}
    try:
        while len(peers) < group.num_processes - 1:
            left = deadline - time.monotonic()
            if left <= 0:
                missing = sorted(set(range(1, group.num_processes)) - set(peers))
                raise ConfigError(
                    f"distributed: process 0 waited {timeout_s:g} s at {group.coordinator} for "
                    f"{group.num_processes} processes; processes {missing} never checked in "
                    "(not started, a different --coordinator, or a firewall)")
            srv.settimeout(min(left, 1.0))
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            conn.settimeout(max(deadline - time.monotonic(), 0.1))
            try:
                pid = int(conn.recv(16).decode().strip() or -1)
            except (OSError, ValueError):
                conn.close()
                continue
            if pid in peers or not 0 < pid < group.num_processes:
                conn.sendall(b"dup\n")
                conn.close()
                raise ConfigError(f"distributed.process_id: process id {pid} checked in twice "
                                  f"or is outside 1..{group.num_processes - 1}")
            peers[pid] = conn
        for conn in peers.values():
            conn.sendall(b"go\n")
    finally:
        for conn in peers.values():
            conn.close()
        srv.close()


def _join(group: ProcessGroup, port: int, deadline: float, timeout_s: float) -> None:
    last = None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ConfigError(
                f"distributed: process {group.process_id} of {group.num_processes} got no answer "
                f"from the coordinator {group.coordinator} within {timeout_s:g} s ({last}); "
                "is process 0 running, with the same --coordinator?")
        try:
            conn = socket.create_connection((group.host, port), timeout=min(left, 1.0))
        except OSError as e:
            last = f"{type(e).__name__}: {e}"
            time.sleep(min(0.2, max(left, 0)))
            continue
        try:
            conn.settimeout(max(deadline - time.monotonic(), 0.1))
            conn.sendall(f"{group.process_id}\n".encode())
            reply = conn.recv(16).decode().strip()
        except OSError as e:
            last = f"{type(e).__name__}: {e}"
            reply = ""
        finally:
            conn.close()
        if reply == "go":
            return
        if reply == "dup":
            raise ConfigError(f"distributed.process_id: {group.process_id} is used by another "
                              "process too")
        if time.monotonic() >= deadline:
            raise ConfigError(
                f"distributed: process {group.process_id} of {group.num_processes} checked in "
                f"at {group.coordinator} but not all processes arrived within {timeout_s:g} s")


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, timeout_s: float = 120.0,
               heartbeat_s: int = 30, auto: bool = False) -> ProcessGroup | None:
    """Join the process group (before any other JAX call); ``None`` for a single process.

    Args:
      coordinator: ``host:port`` of process 0 (or ``$JAX_COORDINATOR_ADDRESS``).
      num_processes, process_id: or ``$JAX_NUM_PROCESSES`` / ``$JAX_PROCESS_ID``.
      timeout_s: how long to wait for all processes to arrive (rendezvous and
        ``jax.distributed.initialize(initialization_timeout=...)``).
      heartbeat_s: after this many seconds without a heartbeat a process counts
        as dead and the others are stopped.
      auto: let JAX detect the cluster (Cloud TPU, Slurm, Open MPI).

    Raises:
      ConfigError: bad values, a coordinator that does not answer in time, or a
        call after JAX has already started its backend.
    """
    group = resolve(coordinator, num_processes, process_id)
    if group is None and not auto:
        return None
    import jax  # here, not at the top: resolve() serves the CLI's start-up without JAX

    if jax.distributed.is_initialized():
        return group
    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        raise ConfigError("distributed: initialize() must run before any JAX computation or "
                          "jax.devices() call in this process (call setup_from_args first)")
    if group is not None and group.num_processes > 1:
        rendezvous(group, timeout_s)
    kw = dict(initialization_timeout=max(int(timeout_s), 1), heartbeat_timeout_seconds=heartbeat_s)
    if group is not None:
        kw.update(coordinator_address=group.coordinator, num_processes=group.num_processes,
                  process_id=group.process_id)
    _cpu_collectives()
    try:
        jax.distributed.initialize(**kw)
    except (RuntimeError, ValueError) as e:
        raise ConfigError(f"distributed: jax.distributed.initialize failed: {e}") from None
    return group


def _cpu_collectives() -> None:
    """CPU devices of different processes talk through gloo (the jax 0.10 default;
    set explicitly in case a default of 'none' comes back)."""
    import jax

    try:
        if jax.config.jax_cpu_collectives_implementation in (None, "", "none"):
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
    except AttributeError:  # an older/newer jax without this option
        pass


def is_writer() -> bool:
    """True on the process that writes results, logs and checkpoint metadata (process 0)."""
    import jax

    return jax.process_index() == 0


def log(msg: str) -> None:
    """Print ``msg`` to stderr on the writer only, prefixed with the process count."""
    if is_writer():
        import jax

        print(f"[{jax.process_count()} process(es)] {msg}", file=sys.stderr, flush=True)


__all__ = ["ProcessGroup", "initialize", "is_writer", "log", "rendezvous", "resolve"]
