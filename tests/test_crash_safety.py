"""Crash safety: a sweep that writes orbax checkpoints is killed with SIGKILL at seeded
random points (some of them while orbax is writing a checkpoint) and resumed: no finished
run is lost or duplicated, and every checkpoint left behind is either restorable or
reported as incomplete with a clear message. Corrupted checkpoint files are detected.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcomp.core.errors import ConfigError
from jaxcomp.train import create_state
from jaxcomp.train.checkpoint import Checkpointer
from tests.tiny_configs import tiny_config_source

#: SIGKILL trials of the sweep (the issue asks for at least 10)
TRIALS = 10
SEED = 20261128

CONFIG = tiny_config_source(epochs=4, learning_rate=1e-2, checkpoint=True,
                            sweep={"seed": list(range(6))})
N_RUNS = 6


def _ckpt_dirs(out: pathlib.Path) -> list[pathlib.Path]:
    return sorted((out / "runs").glob("*/checkpoints")) if (out / "runs").exists() else []


def _tmp_dirs(out: pathlib.Path) -> list[pathlib.Path]:
    """Checkpoints orbax had not finished writing (its temporary directories)."""
    return [p for d in _ckpt_dirs(out) for p in d.iterdir() if "tmp" in p.name]


def _events(out: pathlib.Path) -> tuple[int, int]:
    res = out / "results.jsonl"
    lines = res.read_bytes().count(b"\n") if res.exists() else 0
    steps = sum(len(list(d.iterdir())) for d in _ckpt_dirs(out))
    return lines, steps


def _target():
    """A train state of the sweep's structure (restore target; values do not matter)."""
    from jaxcomp.experiment import base_config
    from jaxcomp.experiment.run import build_model, load_data, make_optimizer
    from jaxcomp.train.loop import init_state

    ns: dict = {}
    exec(CONFIG, ns)
    cfg = ns["get_config"]()
    ds = load_data(cfg)
    assert base_config  # same config machinery as the CLI
    return init_state(build_model(cfg, ds), ds, make_optimizer(cfg.train), seed=0)


def _check_store(out: pathlib.Path, before: set[str]) -> set[str]:
    """Invariants after a kill: records parse, finished ones unique, none lost."""
    from jaxcomp.sweep.store import FINISHED, ResultStore

    recs = ResultStore(out).records()  # opening repairs a torn last line
    finished = [r["key"] for r in recs if r.get("status") in FINISHED]
    assert len(finished) == len(set(finished)), "a finished run was recorded twice"
    now = set(finished)
    assert before <= now, f"finished runs lost: {before - now}"
    return now


def _check_checkpoints(out: pathlib.Path, target) -> dict[str, int]:
    """Every checkpoint directory restores, or fails with a clear ConfigError."""
    counts = {"restorable": 0, "incomplete_detected": 0, "tmp_ignored": 0}
    for d in _ckpt_dirs(out):
        tmp = [p for p in d.iterdir() if "tmp" in p.name]
        ck = Checkpointer(str(d))
        try:
            latest = ck.latest_epoch()
            try:
                state, epoch = ck.restore_latest(target)
            except ConfigError as e:
                assert "unreadable or incomplete" in str(e) and str(d) in str(e), str(e)
                counts["incomplete_detected"] += 1
                continue
            if latest is None:
                assert state is None
                continue
            assert epoch == latest and int(state.step) > 0
            assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(
                state.params))
            counts["restorable"] += 1
            # an unfinished (temporary) write is never taken as the newest checkpoint
            counts["tmp_ignored"] += len(tmp)
            assert all(p.name != str(latest) for p in tmp)
        finally:
            ck.close()
    return counts


def test_sigkill_trials_lose_and_duplicate_nothing(tmp_path, capsys):
    from jaxcomp.cli import main

    cfg = tmp_path / "crash_sweep.py"
    cfg.write_text(CONFIG)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "jaxcomp.cli", "sweep", str(cfg), "--out", str(out),
           "--no-progress", "--no-vectorize"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    rng = np.random.default_rng(SEED)
    target = _target()
    finished: set[str] = set()
    stats = {"kills": 0, "during_checkpoint_write": 0, "finished_before_kill": 0,
             "restorable": 0, "incomplete_detected": 0, "tmp_ignored": 0}
    for trial in range(TRIALS):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        start = _events(out)
        deadline = time.time() + 240
        aim_at_write = trial % 2 == 1  # odd trials: kill while orbax writes a checkpoint
        delay = float(rng.uniform(0.0, 0.6))
        hit = False
        seen = start
        changes = 0
        while proc.poll() is None and time.time() < deadline:
            if aim_at_write and _tmp_dirs(out):
                hit = True
                break
            now = _events(out)
            if now != seen:
                seen, changes = now, changes + 1
                # aimed trials fall back to a random kill if two writes slipped past the poll
                if not aim_at_write or changes >= 3:
                    time.sleep(delay)
                    break
            time.sleep(0.003)
        if proc.poll() is not None:
            stats["finished_before_kill"] += 1
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        stats["kills"] += 1
        stats["during_checkpoint_write"] += bool(hit and _tmp_dirs(out))
        finished = _check_store(out, finished)
        for k, v in _check_checkpoints(out, target).items():
            stats[k] += v
    # resume to the end (in-process): every run exactly once, nothing lost
    assert main(["sweep", str(cfg), "--out", str(out), "--no-progress", "--no-vectorize"]) == 0
    final = _check_store(out, finished)
    assert len(final) == N_RUNS
    recs = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    ok = [r for r in recs if r["status"] == "ok"]
    assert sorted(r["seed"] for r in ok) == list(range(N_RUNS))
    # a run killed between its last checkpoint and its record still reports its metrics
    stats["finished_without_metrics"] = sum("test_accuracy" not in r["metrics"] for r in ok)
    assert stats["finished_without_metrics"] == 0, stats
    assert stats["kills"] >= TRIALS - stats["finished_before_kill"]
    assert stats["kills"] >= 8, stats  # the sweep must really be interrupted
    assert stats["during_checkpoint_write"] >= 1, stats
    with capsys.disabled():
        print(f"\ncrash-safety: {json.dumps(stats)}; finished runs lost: 0, duplicated: 0")


# ------------------------------------------------------------------ corrupted checkpoints


def _saved(tmp_path) -> tuple[str, object]:
    w = jnp.asarray(np.random.default_rng(0).normal(size=(32, 32)), jnp.float32)
    s = create_state({"w": w}, {}, optax.adam(1e-3), key=jax.random.key(0))
    d = str(tmp_path / "ck")
    ck = Checkpointer(d)
    ck.save(s, epoch=1)
    ck.close()
    return d, s


def _largest_data_file(d: str) -> pathlib.Path:
    files = [p for p in pathlib.Path(d, "1").rglob("*") if p.is_file() and "/d/" in str(p)]
    return max(files, key=lambda p: p.stat().st_size)


def _truncate(d):
    p = _largest_data_file(d)
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _zero(d):
    p = _largest_data_file(d)
    p.write_bytes(b"\0" * p.stat().st_size)


def _remove_data(d):
    _largest_data_file(d).unlink()


def _garbage_metadata(d):
    pathlib.Path(d, "1", "default", "_METADATA").write_text("{not json")


def _remove_metadata(d):
    pathlib.Path(d, "1", "default", "_METADATA").unlink()


def _flip_byte(d):
    p = _largest_data_file(d)
    b = bytearray(p.read_bytes())
    b[len(b) // 2] ^= 0xFF
    p.write_bytes(bytes(b))


@pytest.mark.parametrize("corrupt", [
    _truncate, _zero, _remove_data, _garbage_metadata, _remove_metadata,
    _flip_byte,
], ids=lambda f: f.__name__.strip("_"))
def test_corrupted_checkpoint_is_detected(tmp_path, corrupt):
    d, s = _saved(tmp_path)
    corrupt(d)
    ck = Checkpointer(d)
    try:
        restored, _ = ck.restore_latest(s)
    except ConfigError as e:
        assert "unreadable or incomplete" in str(e) and d in str(e)
        return
    finally:
        ck.close()
    same = np.array_equal(np.asarray(restored.params["w"]), np.asarray(s.params["w"]))
    raise AssertionError(f"corrupted checkpoint loaded silently (weights identical: {same})")


def test_unfinished_checkpoint_write_is_ignored(tmp_path):
    """A checkpoint killed mid-write (orbax's temporary directory) is not restored."""
    d, s = _saved(tmp_path)
    shutil.copytree(pathlib.Path(d, "1"), pathlib.Path(d, "2.orbax-checkpoint-tmp-123"))
    ck = Checkpointer(d)
    restored, epoch = ck.restore_latest(s)
    ck.close()
    assert epoch == 1
    np.testing.assert_array_equal(np.asarray(restored.params["w"]), np.asarray(s.params["w"]))


def test_resume_after_final_checkpoint_keeps_metrics(tmp_path):
    from jaxcomp.experiment import base_config, run_experiment
    from jaxcomp.experiment.config import apply_overrides

    c = base_config()
    apply_overrides(c, ["data.name=synthetic", "model.name=mlp", "train.epochs=1",
                        "train.checkpoint=True"])
    with c.unlocked():
        c.model.features = (8,)
    first = run_experiment(c, out_dir=str(tmp_path))
    again = run_experiment(c, out_dir=str(tmp_path))  # as after a kill before the record
    assert "test_accuracy" in first["metrics"]
    assert again["metrics"].get("test_accuracy") == first["metrics"]["test_accuracy"]
