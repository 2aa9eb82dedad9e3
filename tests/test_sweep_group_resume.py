"""A vectorized group interrupted mid-training resumes from its epoch-end checkpoint and
writes exactly the records of an uninterrupted run; a broken checkpoint is detected,
warned about in one line and never loaded; progress advances per epoch."""

from __future__ import annotations

import contextlib
import io
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import jaxcomp.sweep.group_training as runner_mod
from jaxcomp.experiment import base_config
from jaxcomp.sweep.grid import product
from jaxcomp.sweep.group_checkpoint import GROUPS
from jaxcomp.sweep.runner import SweepRunner
from jaxcomp.sweep.store import ResultStore

# one worker runs this module (test.sh: --dist loadgroup): its module fixtures (the straight
# and the once-interrupted sweeps, about 15 and 10 s) are built once, not on each worker
pytestmark = pytest.mark.xdist_group("sweep_group_resume")

EPOCHS = 4
SPEC = {"prune.sparsity": [0.5, 0.9], "seed": [0, 1]}
TIMING = ("train_seconds", "total_seconds")


class Killed(BaseException):
    """Stands in for a kill: not an ``Exception``, so no fallback path catches it."""


def _cfg(epochs=EPOCHS):
    c = base_config()
    c.data.name = "digits"
    c.model.name = "mlp"
    with c.unlocked():
        c.model.features = (32,)
    c.train.epochs = epochs
    c.train.batch_size = 64
    c.prune.method = "magnitude"
    c.prune.schedule = "gradual"  # step-gated mask updates: shared counters in the state
    c.prune.frequency = 5
    return c


def _run(out, log=None, **kw):
    return SweepRunner(_cfg(), product(SPEC), str(out), progress=False,
                       log=log or (lambda m: None), **kw).run()


def _comparable(out):
    recs = {r["key"]: r for r in ResultStore(out).records()}
    return {k: ({m: v for m, v in r["metrics"].items() if m not in TIMING}, r["history"],
                r["ledger"], r["status"]) for k, r in recs.items()}


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """The uninterrupted sweep: its comparable records and its progress lines."""
    out = tmp_path_factory.mktemp("straight")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):  # not a terminal: plain progress lines
        s = SweepRunner(_cfg(), product(SPEC), str(out), log=lambda m: None).run()
    assert s["vectorized"] == 4 and s["compiles"] == 1
    assert not (out / GROUPS).exists()
    return _comparable(out), err.getvalue().splitlines()


@pytest.fixture
def straight(straight_run):
    return straight_run[0]


def _interrupt_after(monkeypatch, epoch):
    real = runner_mod.epoch_end_hook

    def hook_factory(*a, **k):
        hook = real(*a, **k)

        def wrapped(e, state, history):
            hook(e, state, history)
            if e == epoch:
                raise Killed(f"after epoch {e}")

        return wrapped

    monkeypatch.setattr(runner_mod, "epoch_end_hook", hook_factory)


def _interrupted(tmp_path, monkeypatch, epoch):
    out = tmp_path / "out"
    out.mkdir(parents=True)
    with monkeypatch.context() as m:
        _interrupt_after(m, epoch)
        with pytest.raises(Killed):
            _run(out)
    assert ResultStore(out).records() == []
    saved = list((out / GROUPS).glob("*/orbax/*"))
    assert [p.name for p in saved] == [str(epoch)]
    return out


@pytest.mark.parametrize("epoch", [EPOCHS - 1])
def test_interrupted_group_resumes_to_the_same_records(tmp_path, monkeypatch, straight, epoch):
    out = _interrupted(tmp_path, monkeypatch, epoch)
    logs = []
    s = _run(out, log=logs.append)
    assert (s["ran"], s["vectorized"], s["compiles"]) == (4, 4, 1)
    assert any(f"resuming 4 setting(s) after epoch {epoch}/{EPOCHS}" in m for m in logs), logs
    got = _comparable(out)
    assert got.keys() == straight.keys()
    for k in got:  # bit-for-bit: same metrics, per-epoch history and ledger
        assert got[k] == straight[k], k
    recs = ResultStore(out).records()
    assert {r["resumed_from_epoch"] for r in recs} == {epoch}
    assert len(recs) == 4 and not (out / GROUPS).exists()  # deleted once written


def test_a_later_padded_chunk_resumes_as_it_was_saved(tmp_path, monkeypatch):
    """8 settings in chunks of 3 ([0,1,2], [3,4,5], [6,7,7]); killed in the last chunk,
    the rerun has 2 pending settings but rebuilds the saved padded chunk and resumes."""
    spec = product({"prune.sparsity": [0.5, 0.9], "seed": [0, 1, 2, 3]})

    def run(out, log=None):
        return SweepRunner(_cfg(epochs=3), spec, str(out), progress=False, chunk_size=3,
                           log=log or (lambda m: None)).run()

    run(tmp_path / "straight")
    real, made = runner_mod.epoch_end_hook, []

    def hook_factory(*a, **k):
        hook = real(*a, **k)
        made.append(hook)
        chunk = len(made)

        def wrapped(e, state, history):
            hook(e, state, history)
            if chunk == 3 and e == 2:
                raise Killed("third chunk, epoch 2")

        return wrapped

    with monkeypatch.context() as m:
        m.setattr(runner_mod, "epoch_end_hook", hook_factory)
        with pytest.raises(Killed):
            run(tmp_path / "out")
    assert len(ResultStore(tmp_path / "out").records()) == 6
    logs = []
    s = run(tmp_path / "out", log=logs.append)
    assert (s["ran"], s["vectorized"]) == (2, 2)
    assert any("resuming 2 setting(s) after epoch 2/3" in m for m in logs), logs
    assert _comparable(tmp_path / "out") == _comparable(tmp_path / "straight")
    assert not (tmp_path / "out" / GROUPS).exists()


def _largest(out):
    files = [p for p in (out / GROUPS).rglob("*") if p.is_file() and "/d/" in str(p)]
    return max(files, key=lambda p: p.stat().st_size)


def _flip(out):
    p = _largest(out)
    b = bytearray(p.read_bytes())
    b[len(b) // 2] ^= 0xFF
    p.write_bytes(bytes(b))


def _truncate(out):
    p = _largest(out)
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _drop_digest(out):
    for p in (out / GROUPS).glob("*/digests/*.json"):
        p.unlink()


def _foreign_meta(out):
    (meta,) = (out / GROUPS).glob("*/meta.json")
    m = json.loads(meta.read_text())
    m["keys"] = m["keys"][::-1]
    meta.write_text(json.dumps(m))


def _only_tmp(out):  # killed during the first save: orbax's temporary folder only
    (step,) = (out / GROUPS).glob("*/orbax/1")
    step.rename(step.with_name("1.orbax-checkpoint-tmp-99"))


@pytest.fixture(scope="module")
def interrupted_once(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    try:
        return _interrupted(tmp_path_factory.mktemp("interrupted"), mp, 1)
    finally:
        mp.undo()


@pytest.mark.parametrize("corrupt", [_flip, _truncate, _only_tmp, _drop_digest, _foreign_meta],
                         ids=lambda f: f.__name__.strip("_"))
def test_broken_group_checkpoint_restarts_the_group_with_a_warning(
        tmp_path, interrupted_once, straight, corrupt):
    out = tmp_path / "out"
    shutil.copytree(interrupted_once, out)
    corrupt(out)
    logs = []
    s = _run(out, log=logs.append)
    warnings = [m for m in logs if "warning: group checkpoint" in m]
    assert len(warnings) == 1 and "the group starts over" in warnings[0], logs
    assert "\n" not in warnings[0]
    assert not any("resuming" in m for m in logs)
    assert s["vectorized"] == 4 and _comparable(out) == straight
    assert "resumed_from_epoch" not in ResultStore(out).records()[0]


def test_progress_advances_every_epoch_of_a_group(straight_run):
    lines = [x for x in straight_run[1] if " epoch " in x]
    assert [x.split(": ")[1].split(" epoch ")[1] for x in lines] == [
        f"{e}/{EPOCHS}" for e in range(1, EPOCHS + 1)]
    assert [x.split(": ")[2].split(",")[0] for x in lines] == [
        f"{4 * e}/{4 * EPOCHS} setting-epochs" for e in range(1, EPOCHS + 1)]


@pytest.mark.slow
def test_sigkill_mid_group_then_resume(tmp_path, straight):
    """A real SIGKILL of the CLI while the group trains (its progress says epoch k of N,
    0 < k < N), then the same command: the records equal the uninterrupted run's."""
    src = ["from jaxcomp.sweep.grid import product",
           f"from {__name__} import _cfg, SPEC",
           "def get_config():", "    return _cfg()",
           "def get_sweep():", "    return product(SPEC)"]
    cfg = tmp_path / "group_sweep.py"
    cfg.write_text("\n".join(src) + "\n")
    out = tmp_path / "out"
    root = str(pathlib.Path(__file__).resolve().parents[1])
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "jaxcomp.cli", "sweep", str(cfg), "--out", str(out)]
    proc = subprocess.Popen(cmd, env=env, cwd=root, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    seen = 0
    deadline = time.time() + 120
    for line in proc.stderr:  # one plain line per epoch (stderr is not a terminal)
        if " epoch " in line and "/" in line:
            seen = int(line.split(" epoch ")[1].split("/")[0])
            if 2 <= seen < EPOCHS:
                proc.send_signal(signal.SIGKILL)
                break
        if time.time() > deadline:
            break
    killed_at = seen
    for line in proc.stderr:  # lines the sweep printed before the signal landed
        if " epoch " in line and "/" in line:
            seen = int(line.split(" epoch ")[1].split("/")[0])
    proc.wait(timeout=60)
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL and 2 <= killed_at <= seen < EPOCHS
    assert ResultStore(out).records() == []
    steps = [int(p.name) for p in (out / GROUPS).glob("*/orbax/*") if p.name.isdigit()]
    assert steps and seen - 1 <= max(steps) <= seen  # at most one reported epoch lost
    logs = []
    s = SweepRunner(_cfg(), product(SPEC), str(out), progress=False, log=logs.append).run()
    assert s["vectorized"] == 4
    assert any(f"after epoch {max(steps)}/{EPOCHS}" in m for m in logs), logs
    assert _comparable(out) == straight
    assert np.all([r["status"] == "ok" for r in ResultStore(out).records()])
