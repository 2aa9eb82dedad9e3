"""Sweep benchmarks (JSON lines on stdout, details on stderr).

* ``vectorized_sweep_time_ratio``: 8 settings of LeNet-300-100 on Fashion-MNIST,
  1 epoch each — one ``jaxcomp sweep`` process (vectorized) vs the same 8
  settings as 8 ``jaxcomp train`` processes one after another (a shell loop).
  Settings are 8 magnitude-pruning sparsities when the prune family exists,
  otherwise 8 seeds (``settings`` says which). Interleaved, median of
  ``--repeats`` (>= 5) rounds; wall and child-process CPU time. Target <= 0.4.
* ``vectorized_sweep_compiles``: compiles of the vectorized program. Target 1.
* ``resume_lost_records``: SIGKILL a sweep mid-way (several kill points), rerun
  the same command, count records lost or duplicated. Target 0.

Run:
    JAX_PLATFORMS=cpu .venv/bin/python benchmarks/sweep.py [--repeats 5] [--only NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JAXCOMP = [sys.executable, "-m", "jaxcomp.cli"]
ENV = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu"),
       "TF_CPP_MIN_LOG_LEVEL": "3"}
LENET = os.path.join(ROOT, "configs", "lenet300_fmnist.py")
SPARSITIES = [0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99]


def emit(name, value, unit, target, ok, **extra):
    print(json.dumps({"name": name, "value": value, "unit": unit, "target": target, "ok": ok,
                      **extra}), flush=True)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def _children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _timed(cmd):
    c0, t0 = _children_cpu(), time.perf_counter()
    p = subprocess.run(cmd, env=ENV, cwd=ROOT, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - c0
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr[-2000:]}")
    return wall, cpu, p.stdout


def _settings():
    from jaxcomp.experiment import families

    fam = families.available().get("prune")
    if fam is not None and "sparsity" in str(getattr(fam, "VECTOR_KEYS", ())):
        return ("sparsity", ["--set", "prune.method=magnitude"], "prune.sparsity", SPARSITIES)
    return ("seeds (prune family not available)", [], "seed", list(range(8)))


def bench_vectorized(repeats):
    kind, base_set, key, values = _settings()
    common = ["--set", "train.epochs=1", *base_set]
    sweep_walls, sweep_cpus, loop_walls, loop_cpus, compiles = [], [], [], [], []
    tmp = tempfile.mkdtemp(prefix="jaxcomp_bench_sweep_")
    try:
        for rep in range(repeats):
            order = ("sweep", "loop") if rep % 2 == 0 else ("loop", "sweep")
            for variant in order:
                if variant == "sweep":
                    out = os.path.join(tmp, f"sweep{rep}")
                    grid = f"{key}=[{','.join(map(str, values))}]"
                    w, c, stdout = _timed([*JAXCOMP, "sweep", LENET, *common, "--grid", grid,
                                           "--out", out, "--no-progress"])
                    m = re.search(r"(\d+) compile\(s\)", stdout)
                    compiles.append(int(m.group(1)) if m else -1)
                    sweep_walls.append(w)
                    sweep_cpus.append(c)
                else:
                    w = c = 0.0
                    for v in values:
                        wi, ci, _ = _timed([*JAXCOMP, "train", LENET, *common, "--set",
                                            f"{key}={v}", "--no-progress"])
                        w += wi
                        c += ci
                    loop_walls.append(w)
                    loop_cpus.append(c)
                walls = sweep_walls if variant == "sweep" else loop_walls
                log(f"round {rep} {variant}: wall {walls[-1]:.1f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ratio = float(np.median(sweep_walls) / np.median(loop_walls))
    cpu_ratio = float(np.median(sweep_cpus) / np.median(loop_cpus))
    emit("vectorized_sweep_time_ratio", round(ratio, 3), "x", "<= 0.4", ratio <= 0.4,
         settings=kind, n_settings=len(values), repeats=repeats,
         sweep_wall_s=round(float(np.median(sweep_walls)), 2),
         loop_wall_s=round(float(np.median(loop_walls)), 2),
         cpu_ratio=round(cpu_ratio, 3), sweep_cpu_s=round(float(np.median(sweep_cpus)), 2),
         loop_cpu_s=round(float(np.median(loop_cpus)), 2),
         load_avg_1m=round(os.getloadavg()[0], 1))
    emit("vectorized_sweep_compiles", max(compiles), "compiles", "1", max(compiles) == 1,
         per_round=compiles, settings=kind)


TINY = '''
from jaxcomp.experiment import base_config
from jaxcomp.sweep.grid import product


def get_config():
    c = base_config()
    c.data.name = "digits"
    c.model.name = "mlp"
    c.train.epochs = 2
    c.train.batch_size = 64
    return c


def get_sweep():
    return product({"seed": list(range(8)), "train.learning_rate": [1e-3, 3e-3]})
'''


def bench_resume(kills):
    tmp = tempfile.mkdtemp(prefix="jaxcomp_bench_resume_")
    cfg = os.path.join(tmp, "tiny.py")
    with open(cfg, "w") as f:
        f.write(TINY)
    lost = dup = 0
    details = []
    try:
        for i in range(kills):
            out = os.path.join(tmp, f"out{i}")
            results = os.path.join(out, "results.jsonl")
            cmd = [*JAXCOMP, "sweep", cfg, "--out", out, "--no-progress"]
            # kill after a varying number of finished records (and once at a random time)
            want = 1 + 3 * i
            p = subprocess.Popen(cmd + (["--no-vectorize"] if i % 2 == 0 else []), env=ENV,
                                 cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.time() + 300
            while p.poll() is None and time.time() < deadline:
                n = open(results, "rb").read().count(b"\n") if os.path.exists(results) else 0
                if n >= want:
                    break
                time.sleep(0.01)
            p.send_signal(signal.SIGKILL)
            p.wait()
            before = open(results, "rb").read().count(b"\n") if os.path.exists(results) else 0
            subprocess.run(cmd, env=ENV, cwd=ROOT, capture_output=True, check=True)
            keys = [json.loads(x)["key"] for x in open(results).read().splitlines()]
            lost_i, dup_i = 16 - len(set(keys)), len(keys) - len(set(keys))
            lost += lost_i
            dup += dup_i
            details.append({"records_before_kill": before, "lost": lost_i, "duplicated": dup_i})
            log(f"kill {i}: {before} records before SIGKILL; lost {lost_i}, duplicated {dup_i}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    emit("resume_lost_records", lost + dup, "records", "0", lost + dup == 0, kills=kills,
         details=details)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--kills", type=int, default=4)
    ap.add_argument("--only", choices=["vectorized", "resume"], default=None)
    a = ap.parse_args()
    if a.only in (None, "resume"):
        bench_resume(a.kills)
    if a.only in (None, "vectorized"):
        bench_vectorized(max(a.repeats, 1))


if __name__ == "__main__":
    main()
