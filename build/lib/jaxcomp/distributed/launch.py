"""Run a program as N local processes × D simulated CPU devices (tests, demos).

On one machine this stands in for N hosts: each process gets
``XLA_FLAGS=--xla_force_host_platform_device_count=D`` (it must be set before
JAX is imported, hence subprocesses) and the ``JAX_COORDINATOR_ADDRESS`` /
``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID`` variables that
:func:`jaxcomp.distributed.multihost.initialize` reads. CPU collectives between
the processes go through gloo (JAX's default CPU collectives). Every process is
started in its own session and killed (the whole group) on timeout or when the
launcher exits for any reason.

Example:
    >>> import sys
    >>> from jaxcomp.distributed.launch import run_local
    >>> code = "import os; print(os.environ['XLA_FLAGS'])"
    >>> r = run_local([sys.executable, "-c", code], num_devices=3, timeout_s=60)
    >>> r.returncode, r.stdout.strip()
    (0, '--xla_force_host_platform_device_count=3')
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence

from jaxcomp.core.errors import ConfigError


@dataclasses.dataclass
class ProcessResult:
    """What one process left: exit status (None if killed on timeout) and output."""

    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool = False


def free_port() -> int:
    """A TCP port that is free, with port + 1 free too (for the rendezvous)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port >= 65534:
            continue
        try:
            with socket.socket() as s2:
                s2.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise ConfigError("launch: could not find two adjacent free TCP ports")


def device_env(num_devices: int, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default ``os.environ``) with ``num_devices`` simulated CPU devices."""
    if num_devices < 1:
        raise ConfigError(f"launch.num_devices: got {num_devices}; must be >= 1")
    env = dict(os.environ if base is None else base)
    flags = [f for f in env.get("XLA_FLAGS", "").split()
             if not f.startswith("--xla_force_host_platform_device_count")]
    flags.append(f"--xla_force_host_platform_device_count={num_devices}")
    env["XLA_FLAGS"] = " ".join(flags)
    env["JAX_PLATFORMS"] = "cpu"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return env


def _kill(procs: Sequence[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                p.kill()


def launch_local(argv: Sequence[str], *, num_processes: int, devices_per_process: int,
                 timeout_s: float, port: int | None = None,
                 env: Mapping[str, str] | None = None, cwd: str | None = None,
                 extra_env: Sequence[Mapping[str, str]] | None = None) -> list[ProcessResult]:
    """Start ``argv`` as ``num_processes`` processes on 127.0.0.1 and wait for all.

    Args:
      argv: the command every process runs (the same program everywhere).
      num_processes, devices_per_process: N processes × D CPU devices.
      timeout_s: wall-clock limit for the whole group; on expiry every process
        still running is killed and reported with ``timed_out=True``.
      port: the coordinator port (default: a free one).
      extra_env: per-process extra variables (a list of N dicts).

    Returns:
      One :class:`ProcessResult` per process, in process-id order.
    """
    if num_processes < 1:
        raise ConfigError(f"launch.num_processes: got {num_processes}; must be >= 1")
    port = free_port() if port is None else port
    base = device_env(devices_per_process, env)
    procs: list[subprocess.Popen] = []
    try:
        for i in range(num_processes):
            e = dict(base)
            if num_processes > 1:
                e.update({"JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
                          "JAX_NUM_PROCESSES": str(num_processes), "JAX_PROCESS_ID": str(i)})
            if extra_env is not None:
                e.update(extra_env[i])
            procs.append(subprocess.Popen(list(argv), env=e, cwd=cwd, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True,
                                          start_new_session=True))
        deadline = time.monotonic() + timeout_s
        results = []
        for p in procs:
            left = max(deadline - time.monotonic(), 0.01)
            try:
                out, err = p.communicate(timeout=left)
                results.append(ProcessResult(p.returncode, out, err))
            except subprocess.TimeoutExpired:
                _kill(procs)
                out, err = p.communicate()
                results.append(ProcessResult(None, out, err, timed_out=True))
        return results
    finally:
        _kill(procs)
        for p in procs:
            if p.poll() is None:
                p.wait(timeout=5)


def run_local(argv: Sequence[str], *, num_devices: int, timeout_s: float,
              env: Mapping[str, str] | None = None, cwd: str | None = None) -> ProcessResult:
    """One process with ``num_devices`` simulated CPU devices (see :func:`launch_local`)."""
    return launch_local(argv, num_processes=1, devices_per_process=num_devices,
                        timeout_s=timeout_s, env=env, cwd=cwd)[0]


__all__ = ["ProcessResult", "device_env", "free_port", "launch_local", "run_local"]
