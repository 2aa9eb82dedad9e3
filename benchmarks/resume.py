"""Resume of a killed sweep mid-way through a vectorized group (JSON lines on stdout,
details on stderr).

The sweep is the demo (``configs/demo_sweep.py``: 15 settings × 12 epochs, one
vmapped group) with ``--grid train.batch_size=[64,128]``, so it has two groups and the
second group's kills also find finished records to keep. Each trial starts
``jaxcomp sweep`` in a subprocess, waits for its progress line ``group G epoch k/N``
at a random ``k`` (0 < k < N), waits a random part of an epoch more, and SIGKILLs it;
a trial counts only if it is *checked* to have landed mid-training (the last progress
line before the kill says ``0 < k < N`` and the group has written no record). Then the
same command runs again (the next trial, or to the end).

* ``resume_lost_records``: records finished before a kill that are missing, changed or
  written again after the rerun. Target 0.
* ``resume_lost_epochs``: the most epochs any kill cost — epochs the killed process
  reported done minus the epoch the rerun resumed after (its ``resuming ... after epoch
  c/N`` line, checked against the checkpoint on disk). Target <= 1.
* ``resume_records_max_abs_diff``: the largest difference of any metric, per-epoch
  history value or ledger entry between the killed-and-resumed sweep and an
  uninterrupted one (timings excluded). Target <= 1e-6 (0 expected: bit-identical).
* ``group_checkpoint_overhead``: the demo sweep in-process with group checkpoints over
  without (median wall of interleaved rounds; process CPU beside). Target <= 1.15.

Run:
    JAX_PLATFORMS=cpu .venv/bin/python benchmarks/resume.py [--kills 4] [--repeats 3]
        [--seed 0] [--only kills|overhead]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from harness import emit, interleaved, log  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "configs", "demo_sweep.py")
GRID = ["--grid", "train.batch_size=[64,128]"]
ENV = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu"),
       "TF_CPP_MIN_LOG_LEVEL": "3",
       "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
EPOCH = re.compile(r"^sweep: group (\w+) epoch (\d+)/(\d+):")
RESUMED = re.compile(r"resuming \d+ setting\(s\) after epoch (\d+)/(\d+)")
DONE = re.compile(r"^sweep: group (\w+): \d+ runs vectorized")
TIMING = ("train_seconds", "total_seconds")


def _cmd(out: str) -> list[str]:
    return [sys.executable, "-m", "jaxcomp.cli", "sweep", DEMO, "--out", out, *GRID]


def _lines(out: str) -> list[bytes]:
    p = pathlib.Path(out, "results.jsonl")
    data = p.read_bytes() if p.exists() else b""
    return data[:data.rfind(b"\n") + 1].splitlines(keepends=True)


def _saved_epoch(out: str) -> int:
    """The newest finished group checkpoint on disk (0: none)."""
    steps = [int(p.name) for p in pathlib.Path(out, "groups").glob("*/orbax/*")
             if p.name.isdigit()]
    return max(steps, default=0)


def _trial(out: str, rng: np.random.Generator, skip_first_group: str | None) -> dict:
    """One run of the sweep, SIGKILLed at a random moment inside a group's training."""
    proc = subprocess.Popen(_cmd(out), env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    resumed_after, target, last, seen_groups = None, None, None, []
    deadline = time.time() + 600
    for line in proc.stderr:
        if (m := RESUMED.search(line)) and resumed_after is None:
            resumed_after = int(m.group(1))
        m = EPOCH.match(line)
        if m is None or time.time() > deadline:
            continue
        group, k, n = m.group(1), int(m.group(2)), int(m.group(3))
        if group not in seen_groups:
            seen_groups.append(group)
        if group == skip_first_group or k >= n:
            continue
        if target is None:
            target = int(rng.integers(k, n))  # an epoch still ahead, k <= target < n
        if k >= target:
            time.sleep(float(rng.uniform(0.0, 0.3)))  # a random moment of the next epoch
            proc.send_signal(signal.SIGKILL)
            last = (group, k, n)
            break
    for line in proc.stderr:  # what it reported before the signal landed
        if (m := EPOCH.match(line)) and last and m.group(1) == last[0]:
            last = (last[0], int(m.group(2)), last[2])
        elif (m := DONE.match(line)) and last and m.group(1) == last[0]:
            last = (last[0], last[2], last[2])  # the group finished: not mid-training
    proc.wait(timeout=60)
    proc.stderr.close()
    if last is None:
        return {"killed": False, "resumed_after": resumed_after}
    written = any(json.loads(x).get("group") == last[0] for x in _lines(out))
    return {"killed": True, "group": last[0], "reported": last[1], "epochs": last[2],
            "mid_training": 0 < last[1] < last[2] and not written, "saved": _saved_epoch(out),
            "resumed_after": resumed_after, "groups_seen": seen_groups}


def _comparable(out: str) -> dict:
    recs = {}
    for raw in _lines(out):
        r = json.loads(raw)
        if r.get("status") in ("ok", "diverged"):
            recs[r["key"]] = ({k: v for k, v in r["metrics"].items() if k not in TIMING},
                              r.get("history"), r["ledger"])
    return recs


def _max_diff(a, b) -> float:
    """The largest |a - b| over matching numbers (inf when the structures differ)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return float("inf")
        return max((_max_diff(a[k], b[k]) for k in a), default=0.0)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        if len(a) != len(b):
            return float("inf")
        return max((_max_diff(x, y) for x, y in zip(a, b, strict=True)), default=0.0)
    if isinstance(a, int | float) and isinstance(b, int | float) and \
            not isinstance(a, bool) and not isinstance(b, bool):
        return 0.0 if a == b else abs(float(a) - float(b))
    return 0.0 if a == b else float("inf")


def bench_kills(kills: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    tmp = tempfile.mkdtemp(prefix="jaxcomp_bench_resume_")
    try:
        ref, out = os.path.join(tmp, "ref"), os.path.join(tmp, "out")
        t0 = time.perf_counter()
        p = subprocess.run(_cmd(ref), env=ENV, cwd=ROOT, capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"reference sweep failed: {p.stderr[-2000:]}")
        first_group = next(m.group(1) for x in p.stderr.splitlines() if (m := EPOCH.match(x)))
        log(f"uninterrupted sweep: {time.perf_counter() - t0:.1f} s, "
            f"{len(_lines(ref))} records")
        trials, finished, lost_records, attempts = [], {}, 0, 0
        while len([t for t in trials if t["mid_training"]]) < kills and attempts < 3 * kills:
            attempts += 1
            # the second half of the kills land in the second group (records exist then)
            skip = first_group if len(trials) >= kills // 2 else None
            t = _trial(out, rng, skip)
            if trials and trials[-1]["mid_training"]:
                trials[-1]["rerun_resumed_after"] = t["resumed_after"]
            if not t["killed"]:
                log(f"attempt {attempts}: the sweep finished before a kill point")
                break
            lines = _lines(out)
            now = {json.loads(x)["key"]: x for x in lines}
            lost_records += sum(now.get(k) != v for k, v in finished.items())
            finished = now
            t["records_before_rerun"] = len(lines)
            trials.append(t)
            log(f"kill {len(trials)}: group {t['group']} reported epoch {t['reported']}/"
                f"{t['epochs']}, checkpoint on disk after epoch {t['saved']}, "
                f"{len(lines)} records kept" + ("" if t["mid_training"] else " (off target)"))
        p = subprocess.run(_cmd(out), env=ENV, cwd=ROOT, capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"resumed sweep failed: {p.stderr[-2000:]}")
        m = RESUMED.search(p.stderr)
        if trials:
            trials[-1]["rerun_resumed_after"] = int(m.group(1)) if m else None
        lines = _lines(out)
        keys = [json.loads(x)["key"] for x in lines]
        final = {json.loads(x)["key"]: x for x in lines}
        lost_records += sum(final.get(k) != v for k, v in finished.items())
        lost_records += len(keys) - len(set(keys))  # written twice
        lost_records += len(set(_comparable(ref)) - set(final))  # never written
        hits = [t for t in trials if t["mid_training"]]
        lost_epochs = []
        for t in hits:  # the rerun must resume after exactly the epoch saved on disk
            after = t.get("rerun_resumed_after") or 0
            lost_epochs.append(t["reported"] - after if after == t["saved"] else t["epochs"])
        diff = _max_diff(_comparable(ref), _comparable(out))
        left = pathlib.Path(out, "groups").exists()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    emit("resume_lost_records", lost_records, "records", 0, lost_records == 0,
         kills=len(hits), attempts=attempts, records=len(final))
    worst = max(lost_epochs) if lost_epochs else None
    emit("resume_lost_epochs", worst, "epochs", 1, worst is not None and worst <= 1
         and len(hits) == kills, per_kill=lost_epochs,
         kill_points=[f"{t['reported']}/{t['epochs']}" for t in hits],
         saved=[t["saved"] for t in hits], group_checkpoints_left=left)
    emit("resume_records_max_abs_diff", diff, "abs", 1e-6, diff <= 1e-6)


def bench_overhead(repeats: int) -> None:
    import jax

    from jaxcomp.sweep.grid import load_sweep
    from jaxcomp.sweep.runner import SweepRunner

    ns: dict = {}
    exec(pathlib.Path(DEMO).read_text(), ns)
    base, spec = ns["get_config"](), load_sweep(DEMO)
    tmp = tempfile.mkdtemp(prefix="jaxcomp_bench_ckpt_")
    runs = {"with": 0, "without": 0}

    def variant(on: bool):
        def go():
            name = "with" if on else "without"
            runs[name] += 1
            out = os.path.join(tmp, f"{name}{runs[name]}")
            SweepRunner(base, spec, out, progress=False, checkpoint_groups=on,
                        log=lambda m: None).run()
            jax.clear_caches()
            shutil.rmtree(out, ignore_errors=True)
        return go

    try:
        t = interleaved({"with": variant(True), "without": variant(False)}, repeats=repeats)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ratio = t["with"]["wall"] / t["without"]["wall"]
    log(f"demo sweep (15 settings x 12 epochs), median of {repeats} interleaved rounds: "
        f"with group checkpoints {t['with']['wall']:.2f} s wall / {t['with']['cpu']:.2f} s "
        f"CPU, without {t['without']['wall']:.2f} s / {t['without']['cpu']:.2f} s")
    emit("group_checkpoint_overhead", round(ratio, 3), "ratio", 1.15, ratio <= 1.15,
         wall_with=round(t["with"]["wall"], 2), wall_without=round(t["without"]["wall"], 2),
         cpu_with=round(t["with"]["cpu"], 2), cpu_without=round(t["without"]["cpu"], 2),
         cpu_ratio=round(t["with"]["cpu"] / t["without"]["cpu"], 3), repeats=repeats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=4, help="SIGKILLs mid-group (>= 1)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved overhead rounds")
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill points")
    ap.add_argument("--only", choices=["kills", "overhead"], default=None)
    a = ap.parse_args()
    if a.kills < 1 or a.repeats < 1:
        ap.error(f"--kills and --repeats: got {a.kills}, {a.repeats}; allowed range [1, inf)")
    if a.only in (None, "kills"):
        bench_kills(a.kills, a.seed)
    if a.only in (None, "overhead"):
        bench_overhead(a.repeats)


if __name__ == "__main__":
    main()
