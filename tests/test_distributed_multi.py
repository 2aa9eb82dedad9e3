"""The same data-parallel run and sharded sweep on 1 device (in-process), on 8
simulated CPU devices (a subprocess: XLA_FLAGS must precede the JAX import) and
on 2 local processes × 4 devices (gloo collectives) give the same numbers; bad
meshes, a coordinator that never answers and a process that dies end cleanly.

All subprocess groups start at once (threads) and are killed on timeout."""

import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from jaxcomp.distributed import worker
from jaxcomp.distributed.launch import free_port, launch_local, run_local

WORKER = [sys.executable, "-m", "jaxcomp.distributed.worker"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 240  # a bound, not an expectation: the jobs take seconds on an idle machine
# one worker runs this module (test.sh: --dist loadgroup), so the module fixture below (its
# subprocess groups, about 100 s on CI's 2 cores) is built once, not on each worker
pytestmark = pytest.mark.xdist_group("distributed_multi")

EIGHT_DEVICE_SCRIPT = r"""
import json, optax
from jaxcomp.core.errors import ConfigError
from jaxcomp.data import synthetic
from jaxcomp.distributed import make_mesh
from jaxcomp.distributed.data_parallel import fit_data_parallel
from jaxcomp.distributed.vectorized import init_stacked
from jaxcomp.models import get_model
ds = synthetic(num_train=128, num_test=32, shape=(4, 4, 1), num_classes=3)
model = get_model("mlp", input_shape=ds.input_shape, num_classes=3, features=(8,))
out = {}
def catch(name, fn):
    try:
        fn(); out[name] = None
    except ConfigError as e:
        out[name] = str(e)
catch("mesh", lambda: make_mesh("sweep=3,data=2"))
catch("batch", lambda: fit_data_parallel(model, ds, optax.sgd(0.1), mesh=make_mesh("data=8"),
                                         epochs=1, batch_size=60))
catch("sweep", lambda: init_stacked(model, ds, optax.sgd(0.1), seeds=range(6),
                                    mesh=make_mesh("sweep=4,data=2")))
from jaxcomp.distributed.sharding import to_host
import jax, numpy as np
kw = dict(epochs=1, batch_size=32, seed=1)
r1 = fit_data_parallel(model, ds, optax.adam(1e-2), mesh=make_mesh("data=8"), **kw)
r2 = fit_data_parallel(model, ds, optax.adam(1e-2), mesh=make_mesh("data=4,model=2"),
                       shard_min_size=64, **kw)
out["fsdp_kernel_spec"] = list(r2.state.params["Dense_0"]["kernel"].sharding.spec)
out["fsdp_mu_spec"] = list(r2.state.opt_state[0].mu["Dense_0"]["kernel"].sharding.spec)
out["fsdp_bias_spec"] = list(r2.state.params["Dense_0"]["bias"].sharding.spec)
out["fsdp_max_diff"] = max(float(np.abs(to_host(a) - to_host(b)).max())
                           for a, b in zip(jax.tree.leaves(r1.state.params),
                                           jax.tree.leaves(r2.state.params)))
out["fsdp_nll"] = [r1.final["test_nll"], r2.final["test_nll"]]
print(json.dumps(out))
"""


def _die_then_resume(d):
    """Process 1 of 2 dies after epoch 1; a fresh pair resumes from the checkpoint."""
    dp = WORKER + ["--task", "dp", "--mesh", "data=8", "--heartbeat-timeout", "5",
                   "--checkpoint-dir", str(d / "ckpt")]
    died = launch_local(dp + ["--epochs", "4", "--die-after-epoch", "1", "--out",
                              str(d / "dies.json")],
                        num_processes=2, devices_per_process=4, timeout_s=TIMEOUT, cwd=ROOT)
    ckpts = sorted(os.listdir(d / "ckpt"))
    resumed = launch_local(dp + ["--epochs", "2", "--out", str(d / "resumed.json")],
                           num_processes=2, devices_per_process=4, timeout_s=TIMEOUT, cwd=ROOT)
    return {"died": died, "ckpts_after_death": ckpts, "resumed": resumed}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("dist")
    common = ["--task", "both", "--epochs", "2", "--settings", "8"]
    jobs = {
        "dev8": lambda: run_local(WORKER + common + ["--mesh", "sweep=4,data=2", "--dp-mesh",
                                                     "data=8", "--out", str(d / "dev8.json")],
                                  num_devices=8, timeout_s=TIMEOUT, cwd=ROOT),
        "proc2x4": lambda: launch_local(
            WORKER + common + ["--mesh", "sweep=2,data=4", "--dp-mesh", "data=8",
                               "--out", str(d / "proc2x4.json")],
            num_processes=2, devices_per_process=4, timeout_s=TIMEOUT, cwd=ROOT),
        "no_coordinator": lambda: run_local(
            WORKER + ["--task", "dp", "--init-timeout", "2", "--coordinator",
                      f"127.0.0.1:{free_port()}", "--num-processes", "2", "--process-id", "1"],
            num_devices=4, timeout_s=TIMEOUT, cwd=ROOT),
        "dies": lambda: _die_then_resume(d),
        "eight_dev_script": lambda: run_local([sys.executable, "-c", EIGHT_DEVICE_SCRIPT],
                                              num_devices=8, timeout_s=TIMEOUT, cwd=ROOT),
    }
    with ThreadPoolExecutor(len(jobs)) as pool:
        t0 = time.monotonic()
        futures = {k: pool.submit(f) for k, f in jobs.items()}
        ref = worker.run_job(worker.build_parser().parse_args(common + ["--mesh", "data=1"]))
        results = {k: f.result() for k, f in futures.items()}
        results["seconds"] = time.monotonic() - t0
    results["ref"] = ref
    results["dir"] = d
    return results


def _ok(r):
    assert r.returncode == 0 and not r.timed_out, r.stderr[-3000:]


def _compare(ref, got):
    for task in ("dp", "sweep"):
        np.testing.assert_allclose(got[task]["params"], ref[task]["params"], rtol=1e-4,
                                   atol=1e-5)
        for a, b in zip(ref[task]["history"], got[task]["history"], strict=True):
            for k in ("train_loss", "train_accuracy", "test_accuracy", "test_nll"):
                np.testing.assert_allclose(b[k], a[k], rtol=1e-4, atol=1e-6, err_msg=k)


def test_eight_devices_match_one(runs):
    _ok(runs["dev8"])
    got = json.loads((runs["dir"] / "dev8.json").read_text())
    assert got["devices"] == 8 and got["mesh"] == {"sweep": 4, "data": 2, "model": 1}
    assert got["dp"]["mesh"] == {"sweep": 1, "data": 8, "model": 1}
    _compare(runs["ref"], got)


def test_two_processes_match_one(runs):
    for r in runs["proc2x4"]:
        _ok(r)
    got = json.loads((runs["dir"] / "proc2x4.json").read_text())
    assert got["processes"] == 2 and got["devices"] == 8
    assert got["mesh"] == {"sweep": 2, "data": 4, "model": 1}
    # data=8 spans both processes: process 0 loads only the first half of each batch
    assert got["dp"]["process0_rows"] == [0, 32]
    _compare(runs["ref"], got)
    assert [p.stdout.strip().splitlines()[-1] for p in runs["proc2x4"]] == ["done", "done"]


def test_reference_learns(runs):
    ref = runs["ref"]
    assert ref["dp"]["history"][-1]["test_accuracy"] > 0.5
    assert len(ref["sweep"]["history"][-1]["test_accuracy"]) == 8


def test_coordinator_that_never_answers_times_out_cleanly(runs):
    r = runs["no_coordinator"]
    assert r.returncode == 2 and not r.timed_out, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: distributed: process 1 of 2 got no answer from the "
                           "coordinator 127.0.0.1:") and "within 2 s" in last


def test_one_process_dying_stops_the_other_without_results(runs):
    p0, p1 = runs["dies"]["died"]
    assert p1.returncode == 17 and "dying after epoch 1" in p1.stderr
    assert not p0.timed_out, "the surviving process hung"
    assert p0.returncode == 3, p0.stderr[-2000:]
    last = [ln for ln in p0.stderr.splitlines() if ln.strip()][-1]
    assert last.startswith("error: distributed: process 0 was stopped") and \
        "another process of this run died" in last, last
    assert "done" not in p0.stdout
    assert not (runs["dir"] / "dies.json").exists()
    assert not list(runs["dir"].glob("dies.json.tmp*"))


def test_bad_mesh_batch_and_sweep_size_on_8_devices(runs):
    r = runs["eight_dev_script"]
    _ok(r)
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert "sweep=3,data=2,model=1 needs 6 devices but 8 are available" in out["mesh"]
    assert out["batch"].startswith("train.batch_size: got 60; must be a positive multiple of "
                                   "the mesh's data axis size 8")
    assert out["sweep"].startswith("sweep.size: got 6; must be a positive multiple of the "
                                   "mesh's sweep axis size 4")


def test_model_axis_shards_params_and_moments_with_same_results(runs):
    r = runs["eight_dev_script"]
    _ok(r)
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["fsdp_kernel_spec"] == ["model"]           # (16, 8) kernel split on dim 0
    assert out["fsdp_mu_spec"] == out["fsdp_kernel_spec"]
    assert out["fsdp_bias_spec"] == []                     # 8 elements: replicated
    assert out["fsdp_max_diff"] < 1e-5
    assert out["fsdp_nll"][1] == pytest.approx(out["fsdp_nll"][0], rel=1e-5)


def test_resume_after_a_death_on_two_processes_matches_one_device(runs):
    """Only process 0 wrote the epoch-1 checkpoint; the resumed pair ends where an
    uninterrupted single-device run does."""
    assert "1" in runs["dies"]["ckpts_after_death"]  # orbax: one directory per epoch
    assert not [f for f in runs["dies"]["ckpts_after_death"]
                if f.startswith(".") and f != ".checksums"]  # no half-written temporary
    for r in runs["dies"]["resumed"]:
        _ok(r)
    got = json.loads((runs["dir"] / "resumed.json").read_text())
    assert [h["epoch"] for h in got["dp"]["history"]] == [1, 2]  # epoch 1 from history.json
    ref = runs["ref"]["dp"]
    np.testing.assert_allclose(got["dp"]["params"], ref["params"], rtol=1e-4, atol=1e-5)
    assert got["dp"]["history"][1]["test_nll"] == pytest.approx(ref["history"][1]["test_nll"],
                                                                rel=1e-4)
    assert sorted(os.listdir(runs["dir"] / "ckpt")) == [".checksums", "1", "2", "history.json"]
