"""CLI start-up benchmarks (JSON lines on stdout, details on stderr).

Each value is the median wall time of ``--repeats`` (default 5) whole
``python -m jaxcomp.cli ...`` processes, the commands run interleaved; ``cpu``
is the median child-process CPU time and ``imports_jax`` whether the command
imported JAX (checked once, in a separate process, from ``sys.modules``).

* ``cli_help_seconds``: ``jaxcomp --help``. Target <= 1.0.
* ``cli_subcommand_help_seconds``: ``jaxcomp train --help``. Target <= 1.0.
* ``cli_version_seconds``: ``jaxcomp --version``. Target <= 1.0.
* ``cli_config_error_seconds``: ``jaxcomp train configs/lenet300_fmnist.py
  --set prune.sparsty=0.5`` (an unknown key: one line, exit 2). Target <= 1.0.
* ``cli_config_value_error_seconds``: the same with ``--set train.learning_rate=-1``
  (a value out of range). Target <= 1.0.
* ``import_jax_seconds``: ``python -c "import jax"``, for scale (no target).

``--baseline DIR`` runs every command a second time in DIR (another checkout of
jaxcomp, with its ``configs/``; ``python -m`` puts the working directory first
on ``sys.path``), interleaved with this one, and adds its median as
``baseline`` to each line.

Run:
    JAX_PLATFORMS=cpu .venv/bin/python benchmarks/cli.py [--repeats 5] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import emit, log  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join("configs", "lenet300_fmnist.py")
COMMANDS = {
    "cli_help_seconds": ["--help"],
    "cli_subcommand_help_seconds": ["train", "--help"],
    "cli_version_seconds": ["--version"],
    "cli_config_error_seconds": ["train", CONFIG, "--set", "prune.sparsty=0.5"],
    "cli_config_value_error_seconds": ["train", CONFIG, "--set", "train.learning_rate=-1"],
}
EXPECTED_RC = {"cli_config_error_seconds": 2, "cli_config_value_error_seconds": 2}
TARGET = 1.0
CHECK_JAX = ("import sys, runpy; sys.argv = ['jaxcomp'] + sys.argv[1:]\n"
             "try:\n    runpy.run_module('jaxcomp.cli', run_name='__main__')\n"
             "except SystemExit:\n    pass\n"
             "print('JAX_IMPORTED=' + str('jax' in sys.modules), file=sys.stderr)")


def _env(root: str) -> tuple[dict[str, str], str]:
    """Environment and working directory that make ``root``'s jaxcomp the one imported."""
    return ({**os.environ, "PYTHONPATH": root, "TF_CPP_MIN_LOG_LEVEL": "3",
             "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}, root)


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _timed(cmd: list[str], where: tuple[dict[str, str], str], rc: int) -> tuple[float, float]:
    c0, t0 = _children_cpu(), time.perf_counter()
    p = subprocess.run(cmd, env=where[0], cwd=where[1], capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - c0
    if p.returncode != rc:
        raise RuntimeError(f"{' '.join(cmd)}: exit {p.returncode}, expected {rc}: "
                           f"{p.stderr[-2000:]}")
    return wall, cpu


def _imports_jax(args: list[str], where: tuple[dict[str, str], str]) -> bool:
    p = subprocess.run([sys.executable, "-c", CHECK_JAX, *args], env=where[0], cwd=where[1],
                       capture_output=True, text=True)
    return "JAX_IMPORTED=True" in p.stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5, help="processes per command")
    ap.add_argument("--baseline", default=None, metavar="DIR",
                    help="another jaxcomp checkout to time interleaved with this one")
    ap.add_argument("--only", default=None, help="run only this benchmark name")
    a = ap.parse_args()
    variants = {"now": _env(ROOT)}
    if a.baseline:
        variants["baseline"] = _env(os.path.abspath(a.baseline))
    cmds = {k: [sys.executable, "-m", "jaxcomp.cli", *v] for k, v in COMMANDS.items()
            if a.only in (None, k)}
    if a.only in (None, "import_jax_seconds"):
        cmds["import_jax_seconds"] = [sys.executable, "-c", "import jax"]
    walls = {(k, v): [] for k in cmds for v in variants}
    cpus = {(k, v): [] for k in cmds for v in variants}
    for rep in range(a.repeats):
        order = list(variants) if rep % 2 == 0 else list(reversed(variants))
        for name, cmd in cmds.items():
            for v in order:
                w, c = _timed(cmd, variants[v], EXPECTED_RC.get(name, 0))
                walls[name, v].append(w)
                cpus[name, v].append(c)
        log(f"round {rep + 1}/{a.repeats} done")
    for name in cmds:
        med = {v: round(statistics.median(walls[name, v]), 3) for v in variants}
        extra = {"cpu": round(statistics.median(cpus[name, "now"]), 3),
                 "repeats": a.repeats}
        if name in COMMANDS:
            extra["imports_jax"] = _imports_jax(COMMANDS[name], variants["now"])
        if "baseline" in variants:
            extra["baseline"] = med["baseline"]
            extra["baseline_cpu"] = round(statistics.median(cpus[name, "baseline"]), 3)
            if name in COMMANDS:
                extra["baseline_imports_jax"] = _imports_jax(COMMANDS[name],
                                                             variants["baseline"])
        if name == "import_jax_seconds":
            emit(name, med["now"], "s", None, ok=True, **extra)
        else:
            emit(name, med["now"], "s", TARGET, **extra)


if __name__ == "__main__":
    main()
