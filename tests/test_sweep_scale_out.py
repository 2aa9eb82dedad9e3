"""``jaxcomp sweep`` from a config on 1 device (in-process), on 8 simulated CPU
devices and on 2 local processes × 4 devices gives the same metrics; bad meshes
and batch sizes are refused before anything runs; when one of two processes is
killed mid-sweep the other ends with exit 3 and one line, the store keeps every
finished record whole, and rerunning the command finishes the rest.

The sweep mixes both paths: four settings (seed × sparsity) share one vmapped
program, split over ``sweep=2`` with batches over ``data=4``; the fifth trains
one-by-one, data-parallel over the mesh. All subprocess groups start at once
(threads) and are killed on timeout."""

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from jaxcomp.distributed.launch import _kill, device_env, free_port, launch_local, run_local
from tests.tiny_configs import tiny_config_source

TIMEOUT = 300  # a bound, not an expectation: each group takes seconds on an idle machine
# runs this module on one worker (test.sh: --dist loadgroup), so its costly fixture (eight
# multi-process sweeps) is built once; tests/conftest.py makes the group take effect under
# pytest >= 9.2, where xdist's own node-id suffix is lost (CI built it on both workers)
pytestmark = pytest.mark.xdist_group("scale_out")

CLI = [sys.executable, "-m", "jaxcomp.cli", "sweep"]
MESH = ["--mesh", "sweep=2,data=4", "--no-progress"]
METRICS = ("test_accuracy", "test_nll", "train_loss", "train_accuracy")

def config_source(last_epochs: int) -> str:
    """Four settings vmapped together (seed x sparsity), then a group of one (its
    own epochs); masks update twice an epoch (8 steps)."""
    return tiny_config_source(
        epochs=2, learning_rate=1e-2, zipped=True,
        extra=('c.prune.method = "magnitude"', "c.prune.frequency = 4"),
        sweep={"seed": [0, 0, 1, 1, 2], "prune.sparsity": [0.5, 0.8, 0.5, 0.8, 0.5],
               "train.epochs": [2, 2, 2, 2, last_epochs]})

EIGHT_DEVICES = r"""
import contextlib, io, json, sys
import jax, numpy as np, optax
from jaxcomp.cli import main
from jaxcomp.data import synthetic
from jaxcomp.distributed import make_mesh
from jaxcomp.models import get_model
from jaxcomp.sweep.vectorized import VectorizedProgram, stack, train_stacked
from jaxcomp.train import init_state
out = {}
# a model axis too: each setting's 64x256 kernel (16384 elements) split over `model`
ds = synthetic(num_train=256, num_test=64, shape=(8, 8, 1))
model = get_model("mlp", input_shape=ds.input_shape, num_classes=4, features=(256,))
tx = optax.adam(1e-2)
nll = {}
for name, mesh in {"one": None, "s2d2m2": make_mesh("sweep=2,data=2,model=2")}.items():
    prog = VectorizedProgram(model, tx, batch_size=32, mesh=mesh)
    r = train_stacked(prog, stack([init_state(model, ds, tx, seed=s) for s in range(4)]), ds,
                      seeds=range(4), epochs=2)
    nll[name] = r.test_nll.tolist()
    if mesh is not None:
        k = r.state.params["Dense_0"]["kernel"]
        out["kernel_spec"] = [str(a) for a in k.sharding.spec]
        out["kernel_shard"] = list(k.addressable_shards[0].data.shape)
        out["compiles"] = prog.compiles
out["model_axis_nll"] = nll
for name, extra in {"mesh": ["--mesh", "sweep=3"],
                    "batch": ["--mesh", "data=8", "--set", "train.batch_size=60"]}.items():
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(["sweep", sys.argv[1], "--out", sys.argv[2] + "/" + name, "--no-progress",
                   *extra])
    out[name] = [rc, err.getvalue().strip()]
print(json.dumps(out))
"""


def _records(directory):
    with open(os.path.join(directory, "results.jsonl")) as f:
        return {r["key"]: r for r in map(json.loads, f)}


def _start_pair(argvs, port):
    procs = []
    for i, argv in enumerate(argvs):
        env = {**device_env(4), "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
               "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": str(i)}
        procs.append(subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True,
                                      start_new_session=True))
    return procs


def _mismatched_meshes(cfg, out):
    """Process 0 and 1 started with different --mesh: both refuse, nobody hangs."""
    procs = _start_pair([[*CLI, cfg, "--out", out, "--no-progress", "--mesh", m]
                         for m in ("sweep=2,data=4", "sweep=4,data=2")], free_port())
    try:
        results = []
        for p in procs:
            _, err = p.communicate(timeout=TIMEOUT)
            results.append((p.returncode, err))
        return results
    except subprocess.TimeoutExpired:
        return None
    finally:
        _kill(procs)


def _kill_mid_sweep(cfg, out):
    """2 processes; kill process 1 once the vmapped group's records are written
    (process 0 is then training the long one-by-one run)."""
    procs = _start_pair([[*CLI, cfg, "--out", out, *MESH, "--heartbeat-timeout", "5"]] * 2,
                        free_port())
    try:
        results = os.path.join(out, "results.jsonl")
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and procs[0].poll() is None:
            if os.path.exists(results) and open(results).read().count("\n") >= 4:
                break
            time.sleep(0.05)
        killed_at = open(results).read().count("\n") if os.path.exists(results) else 0
        _kill([procs[1]])
        try:
            _, err0 = procs[0].communicate(timeout=max(deadline - time.monotonic(), 1))
            return {"rc": procs[0].returncode, "stderr": err0, "killed_at": killed_at,
                    "timed_out": False}
        except subprocess.TimeoutExpired:
            return {"rc": None, "stderr": "", "killed_at": killed_at, "timed_out": True}
    finally:
        _kill(procs)


def _kill_then_rerun(cfg, out, cwd):
    """:func:`_kill_mid_sweep`, then the same command again on 2 processes (``"resumed"``);
    one job, so the rerun overlaps the fixture's other groups."""
    killed = _kill_mid_sweep(cfg, out)
    killed["resumed"] = launch_local([*CLI, cfg, "--out", out, *MESH], num_processes=2,
                                     devices_per_process=4, timeout_s=TIMEOUT, cwd=cwd)
    return killed


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("scale_sweep")
    cfg = d / "cfg.py"
    cfg.write_text(config_source(1))
    # the one-by-one run lasts long enough to be killed in: the kill comes within about
    # 50 ms of the fourth record, and 40 epochs (320 data-parallel steps, about 10 s on 2
    # busy cores) leave a wide margin: with 4 and with 1 epoch it still came in time (one
    # try each). The rerun trains all of it, so the 400 epochs used before cost about 100 s.
    long_cfg = d / "long.py"
    long_cfg.write_text(config_source(40))
    cwd = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    jobs = {
        "dev8": lambda: run_local([*CLI, str(cfg), "--out", str(d / "dev8"), *MESH],
                                  num_devices=8, timeout_s=TIMEOUT, cwd=cwd),
        "proc2": lambda: launch_local([*CLI, str(cfg), "--out", str(d / "proc2"), *MESH],
                                      num_processes=2, devices_per_process=4,
                                      timeout_s=TIMEOUT, cwd=cwd),
        "dev8_script": lambda: run_local([sys.executable, "-c", EIGHT_DEVICES, str(cfg), str(d)],
                                 num_devices=8, timeout_s=TIMEOUT, cwd=cwd),
        "killed": lambda: _kill_then_rerun(str(long_cfg), str(d / "killed"), cwd),
        "mismatch": lambda: _mismatched_meshes(str(cfg), str(d / "mismatch")),
    }
    with ThreadPoolExecutor(len(jobs)) as pool:
        futures = {k: pool.submit(f) for k, f in jobs.items()}
        from jaxcomp.experiment.config import load_config
        from jaxcomp.sweep.grid import load_sweep
        from jaxcomp.sweep.runner import SweepRunner

        ref = SweepRunner(load_config(str(cfg)), load_sweep(str(cfg)), str(d / "ref"),
                          progress=False).run()
        out = {k: f.result() for k, f in futures.items()}
    out["resumed"] = out["killed"].pop("resumed")
    out.update(dir=d, ref_summary=ref)
    return out


def _ok(r):
    assert r.returncode == 0 and not r.timed_out, r.stderr[-3000:]


def _same_metrics(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k]["status"] == b[k]["status"] == "ok"
        assert a[k]["path"] == b[k]["path"]
        for m in METRICS:
            assert abs(a[k]["metrics"][m] - b[k]["metrics"][m]) < 2e-5, (k, m)
        assert a[k]["ledger"]["nonzeros"] == b[k]["ledger"]["nonzeros"]


def test_reference_mixes_vmapped_and_one_by_one_runs(runs):
    s = runs["ref_summary"]
    assert (s["vectorized"], s["sequential"], s["error"]) == (4, 1, 0)
    recs = _records(runs["dir"] / "ref")
    assert len({r["metrics"]["test_nll"] for r in recs.values()}) == 5


def test_eight_devices_match_one_device(runs):
    _ok(runs["dev8"])
    assert "on mesh sweep=2,data=4,model=1: 4 vectorized, 1 one by one" in runs["dev8"].stdout
    _same_metrics(_records(runs["dir"] / "ref"), _records(runs["dir"] / "dev8"))


def test_two_processes_match_one_device_and_only_process_0_writes(runs):
    p0, p1 = runs["proc2"]
    _ok(p0)
    _ok(p1)
    assert "over 2 processes: 4 vectorized, 1 one by one" in p0.stdout
    assert "sweep: process 1 done (5 runs" in p1.stdout
    _same_metrics(_records(runs["dir"] / "ref"), _records(runs["dir"] / "proc2"))
    assert len((runs["dir"] / "proc2" / "results.jsonl").read_text().splitlines()) == 5


def test_model_axis_splits_each_settings_kernel_and_matches(runs):
    r = runs["dev8_script"]
    _ok(r)
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["kernel_spec"] == ["sweep", "None", "model"] and out["compiles"] == 1
    assert out["kernel_shard"] == [2, 64, 128]  # 2 of 4 settings, half of 256 columns
    a, b = out["model_axis_nll"]["one"], out["model_axis_nll"]["s2d2m2"]
    assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1e-5


def test_bad_mesh_and_batch_size_are_refused(runs):
    r = runs["dev8_script"]
    _ok(r)
    out = json.loads(r.stdout.strip().splitlines()[-1])
    rc, err = out["mesh"]
    assert rc == 2 and "mesh: sweep=3,data=1,model=1 needs 3 devices but 8 are available" in err
    rc, err = out["batch"]
    assert rc == 2 and ("train.batch_size: got 60; must be a positive multiple of the mesh's "
                        "data axis size 8") in err
    assert not (runs["dir"] / "batch" / "results.jsonl").exists()


def test_killed_process_stops_the_other_and_the_rerun_finishes(runs):
    k = runs["killed"]
    assert not k["timed_out"], "the surviving process hung"
    assert k["killed_at"] == 4, "process 1 was not killed during the one-by-one run"
    assert k["rc"] == 3, k["stderr"][-3000:]
    last = [ln for ln in k["stderr"].splitlines() if ln.strip()][-1]
    assert last.startswith("jaxcomp sweep: error: distributed: process 0 was stopped") and \
        "rerun the same command to resume" in last, last
    p0, p1 = runs["resumed"]
    _ok(p0)
    _ok(p1)
    assert "4 already done, 1 run now" in p0.stdout, p0.stdout[-3000:]
    recs = _records(runs["dir"] / "killed")
    lines = (runs["dir"] / "killed" / "results.jsonl").read_text().splitlines()
    assert len(lines) == 5 and len(recs) == 5
    assert all(r["status"] == "ok" for r in recs.values())
    ref = _records(runs["dir"] / "ref")
    for r in recs.values():  # the vmapped four equal the reference's
        if r["path"] == "vectorized":
            match = [x for x in ref.values() if x["setting"] == r["setting"]]
            assert abs(match[0]["metrics"]["test_nll"] - r["metrics"]["test_nll"]) < 2e-5


def test_processes_started_with_different_meshes_both_refuse(runs):
    r = runs["mismatch"]
    assert r is not None, "a process with a different mesh hung"
    for rc, err in r:
        assert rc == 2, err[-3000:]
        assert "were started with a different sweep (config, grid or mesh) than process 0" \
            in err and "same config, --set/--grid overrides and --mesh" in err
    assert not (runs["dir"] / "mismatch" / "results.jsonl").exists()
