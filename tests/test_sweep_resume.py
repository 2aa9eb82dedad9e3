"""A real SIGKILL of a sweep subprocess mid-way, then the same command again:
nothing lost, nothing duplicated; then the report of the finished directory."""

import json
import os
import signal
import subprocess
import sys
import time

from jaxcomp.cli import main
from tests.tiny_configs import tiny_config_source

CONFIG = tiny_config_source(epochs=1, learning_rate=1e-2, sweep={"seed": list(range(8))})


def _lines(path):
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_sigkill_midway_then_resume(tmp_path, capsys):
    cfg = tmp_path / "tiny_sweep.py"
    cfg.write_text(CONFIG)
    out = tmp_path / "out"
    results = out / "results.jsonl"
    cmd = [sys.executable, "-m", "jaxcomp.cli", "sweep", str(cfg), "--out", str(out),
           "--no-progress", "--no-vectorize"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while _lines(results) < 1 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = results.read_bytes()
    n_before = before.count(b"\n")
    assert 1 <= n_before < 8, "the sweep must be killed mid-way"
    # rerun the same sweep (vectorized now: the record keys do not depend on the path)
    assert main(["sweep", str(cfg), "--out", str(out), "--no-progress"]) == 0
    after = results.read_bytes()
    assert after.startswith(before[:before.rfind(b"\n") + 1])  # finished records kept
    recs = [json.loads(x) for x in after.decode().splitlines()]
    keys = [r["key"] for r in recs]
    assert len(keys) == len(set(keys)) == 8  # nothing lost, nothing duplicated
    assert sorted(r["seed"] for r in recs) == list(range(8))
    assert "already done" in capsys.readouterr().out
    # the report of the finished sweep: one group of 8 seeds
    assert main(["report", str(out), "--no-plots"]) == 0
    text = capsys.readouterr().out
    accs = [r["metrics"]["test_accuracy"] for r in recs]
    import numpy as np

    from jaxcomp.sweep.tables import fmt_stat

    want = fmt_stat({"mean": np.mean(accs), "std": np.std(accs, ddof=1), "n": 8})
    assert f"| 8 | fp32 dense | {want} |" in " ".join(text.split())  # padding collapsed
