"""Mesh config, shardings, multi-process setup and CLI flags — in-process, one device."""

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxcomp.core.errors import ConfigError
from jaxcomp.distributed import make_mesh, mesh_config, mesh_shape, parse_mesh
from jaxcomp.distributed.args import add_distributed_arguments, setup_from_args
from jaxcomp.distributed.launch import device_env, free_port
from jaxcomp.distributed.multihost import ProcessGroup, initialize, rendezvous, resolve
from jaxcomp.distributed.sharding import (
    _leaf_spec,
    batch_sharding,
    check_divisible,
    process_rows,
    put_global,
    replicate,
    replicated,
    shard_batch,
    shard_stacked,
    stacked_shardings,
    state_shardings,
    to_host,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_parse_mesh():
    assert parse_mesh("sweep=2, data=4") == {"sweep": 2, "data": 4}
    assert parse_mesh("data=-1") == {"data": -1}
    with pytest.raises(ConfigError, match="AXIS=SIZE"):
        parse_mesh("sweep2")
    with pytest.raises(ConfigError, match=r"mesh.data: got 'x'"):
        parse_mesh("data=x")


@pytest.mark.parametrize("spec,n,want", [
    ({"sweep": 2, "data": 4}, 8, (2, 4, 1)),
    ({"sweep": 2, "data": -1}, 8, (2, 4, 1)),
    ({"model": 2, "sweep": -1}, 8, (4, 1, 2)),
    (None, 8, (1, 8, 1)),
    ("sweep=8", 8, (8, 1, 1)),
    (mesh_config(), 3, (1, 3, 1)),
    (ml_collections.ConfigDict({"sweep": 1, "data": 2, "model": 2}), 4, (1, 2, 2)),
])
def test_mesh_shape_valid(spec, n, want):
    got = mesh_shape(spec, n)
    assert tuple(got[a] for a in ("sweep", "data", "model")) == want
    assert np.prod(want) == n


@pytest.mark.parametrize("spec,n,match", [
    ({"sweep": 2, "data": 3}, 8, r"sweep=2,data=3,model=1 needs 6 devices but 8 are available"),
    ({"sweep": 3, "data": -1}, 8, r"mesh.data: -1 cannot fill .* 8 devices .* product 3"),
    ({"swep": 2}, 2, r"mesh.swep: unknown mesh axis.*did you mean 'sweep'"),
    ({"sweep": -1, "data": -1}, 8, "at most one axis may be -1"),
    ({"data": 0}, 8, r"mesh.data: got 0; allowed: an integer >= 1"),
    ({"data": 2.0}, 2, r"mesh.data: got 2.0"),
    ({"data": True}, 1, r"mesh.data: got True"),
    (42, 1, "expected a dict"),
])
def test_mesh_shape_errors(spec, n, match):
    with pytest.raises(ConfigError, match=match):
        mesh_shape(spec, n)


def test_make_mesh_against_real_devices():
    n = jax.device_count()
    mesh = make_mesh({"data": -1})
    assert mesh.axis_names == ("sweep", "data", "model")
    assert dict(mesh.shape) == {"sweep": 1, "data": n, "model": 1}
    with pytest.raises(ConfigError, match=f"needs {2 * n} devices but {n} are available"):
        make_mesh({"sweep": 2 * n})


def test_leaf_spec_fsdp_rule():
    assert _leaf_spec((784, 300), 4, 100) == P("model")
    assert _leaf_spec((300, 784), 4, 100) == P(None, "model")
    assert _leaf_spec((300, 7), 8, 100) == P()        # nothing divisible: replicated
    assert _leaf_spec((10,), 2, 100) == P()           # small: replicated
    assert _leaf_spec((784, 300), 1, 100) == P()      # no model axis


def test_state_and_stacked_shardings():
    mesh = make_mesh()
    tree = {"w": np.zeros((4, 3)), "b": np.zeros(3)}
    sh = state_shardings(mesh, tree)
    assert all(s.spec == P() for s in jax.tree.leaves(sh))
    st = stacked_shardings(mesh, tree)
    assert all(s.spec == P("sweep") for s in jax.tree.leaves(st))
    with pytest.raises(ConfigError, match="no leading setting axis"):
        stacked_shardings(mesh, {"s": np.float32(1.0)})
    placed = shard_stacked(tree, mesh)
    assert placed["w"].sharding.spec == P("sweep")
    np.testing.assert_array_equal(to_host(replicate(tree, mesh)["w"]), tree["w"])


def test_shard_batch():
    mesh = make_mesh()
    b = shard_batch({"x": np.ones((6, 2)), "y": np.arange(6)}, mesh)
    assert b["x"].sharding.spec == P("data")
    np.testing.assert_array_equal(to_host(b["y"]), np.arange(6))
    with pytest.raises(ConfigError, match=r"train.batch_size: .*disagree.*\[5, 6\]"):
        shard_batch({"x": np.ones((6, 2)), "y": np.arange(5)}, mesh)


def test_check_divisible():
    mesh = make_mesh()
    assert check_divisible("train.batch_size", 8, mesh, "data") == 8
    with pytest.raises(ConfigError, match=r"train.batch_size: got 0; must be a positive multiple"):
        check_divisible("train.batch_size", 0, mesh, "data")


@pytest.mark.parametrize("use_jit", [True, False])
def test_put_global_roundtrip_with_keys(use_jit):
    mesh = make_mesh()
    tree = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "key": jax.random.key(7),
            "n": np.int32(3)}
    put = put_global(tree, replicated(mesh))
    assert put["w"].sharding == replicated(mesh)
    f = jax.jit(lambda t: t["w"] * 2) if use_jit else (lambda t: t["w"] * 2)
    np.testing.assert_array_equal(to_host(f(put)), tree["w"] * 2)
    np.testing.assert_array_equal(to_host(put["key"]), jax.random.key_data(tree["key"]))
    assert jax.random.uniform(put["key"]) == jax.random.uniform(tree["key"])


def test_process_rows_single_process():
    mesh = make_mesh()
    assert process_rows(batch_sharding(mesh), (12, 5)) == slice(0, 12)
    sh = jax.sharding.NamedSharding(mesh, P(None, "data"))
    assert process_rows(sh, (3, 12), axis=1) == slice(0, 12)


def test_to_host_plain_values():
    np.testing.assert_array_equal(to_host(jnp.ones(3)), np.ones(3))
    np.testing.assert_array_equal(to_host([1, 2]), np.array([1, 2]))


def test_resolve_env_and_flags():
    env = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4",
           "JAX_PROCESS_ID": "3"}
    g = resolve(None, None, None, env=env)
    assert g == ProcessGroup("10.0.0.1:1234", 4, 3) and g.host == "10.0.0.1" and g.port == 1234
    assert resolve(None, None, 2, env=env).process_id == 2     # flags win
    assert resolve(None, 1, 0, env={}) is None


@pytest.mark.parametrize("args,match", [
    ((None, 2, 0), "distributed.coordinator: not given"),
    (("host", 2, 0), r"distributed.coordinator: got 'host'; expected HOST:PORT"),
    (("h:99999", 2, 0), "port in 1..65534"),
    (("h:1234", None, 0), "distributed.num_processes: not given"),
    (("h:1234", 0, 0), r"distributed.num_processes: got 0; must be >= 1"),
    (("h:1234", 2, None), "distributed.process_id: not given"),
    (("h:1234", 2, 2), r"distributed.process_id: got 2; allowed range \[0, 1\]"),
    (("h:1234", "two", 0), r"distributed.num_processes: got 'two'; expected an integer"),
])
def test_resolve_errors(args, match):
    with pytest.raises(ConfigError, match=match):
        resolve(*args, env={})


def test_resolve_env_error_names_the_variable():
    with pytest.raises(ConfigError, match="JAX_NUM_PROCESSES: got 'x'"):
        resolve("h:1", None, 0, env={"JAX_NUM_PROCESSES": "x"})


def test_rendezvous_all_arrive():
    port = free_port()
    n = 3
    errors = []

    def member(i):
        try:
            rendezvous(ProcessGroup(f"127.0.0.1:{port}", n, i), timeout_s=20)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=member, args=(i,)) for i in (2, 1, 0)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join(30)
    assert errors == [] and not any(t.is_alive() for t in threads)


def test_rendezvous_coordinator_never_answers():
    port = free_port()
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match=rf"process 1 of 2 got no answer from the coordinator "
                                          rf"127.0.0.1:{port} within 1 s"):
        rendezvous(ProcessGroup(f"127.0.0.1:{port}", 2, 1), timeout_s=1.0)
    assert time.monotonic() - t0 < 5


def test_rendezvous_missing_peer_is_named():
    port = free_port()
    with pytest.raises(ConfigError, match=r"processes \[1\] never checked in"):
        rendezvous(ProcessGroup(f"127.0.0.1:{port}", 2, 0), timeout_s=1.0)


def test_initialize_after_backend_start_is_a_config_error():
    jax.devices()  # the backend is up
    with pytest.raises(ConfigError, match="must run before any JAX computation"):
        initialize("127.0.0.1:1234", 2, 0, timeout_s=1)
    assert initialize(None, None, None) is None or jax.process_count() == 1


def test_cli_flags_and_setup():
    p = argparse.ArgumentParser()
    add_distributed_arguments(p)
    a = p.parse_args(["--mesh", "sweep=1,data=-1", "--init-timeout", "5"])
    assert a.init_timeout == 5.0 and a.coordinator is None
    mesh = setup_from_args(a)
    assert dict(mesh.shape)["data"] == jax.device_count()
    mesh = setup_from_args(p.parse_args([]), mesh_default={"sweep": 1})
    assert dict(mesh.shape) == {"sweep": 1, "data": 1, "model": 1}
    mesh = setup_from_args(p.parse_args([]))
    assert dict(mesh.shape) == {"sweep": 1, "data": jax.device_count(), "model": 1}
    with pytest.raises(ConfigError, match="needs"):
        setup_from_args(p.parse_args(["--mesh", f"sweep={jax.device_count() + 1}"]))


def test_flags_join_a_parser_that_already_has_mesh():
    p = argparse.ArgumentParser()
    p.add_argument("--mesh", default="sweep=1")
    add_distributed_arguments(p)
    a = p.parse_args(["--process-id", "0"])
    assert a.mesh == "sweep=1" and a.process_id == 0 and a.heartbeat_timeout == 30


def test_device_env_replaces_the_device_flag():
    env = device_env(8, {"XLA_FLAGS": "--xla_force_host_platform_device_count=2 --foo"})
    assert env["XLA_FLAGS"] == "--foo --xla_force_host_platform_device_count=8"
    with pytest.raises(ConfigError, match="launch.num_devices"):
        device_env(0)


def test_free_port_pair_is_bindable():
    port = free_port()
    for q in (port, port + 1):
        with socket.socket() as s:
            s.bind(("127.0.0.1", q))


def test_parse_mesh_refuses_an_axis_given_twice():
    with pytest.raises(ConfigError, match=r"mesh: got 'sweep=2,data=2,sweep=1'; axis 'sweep' "
                                          r"is given twice"):
        parse_mesh("sweep=2,data=2,sweep=1")


@pytest.mark.parametrize("body,rc,says", [
    ("import os; os.abort()", 3, "was stopped (signal 6) by JAX's coordination service"),
    ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", 137,
     "was killed by signal 9 SIGKILL"),
    ("raise SystemExit(5)", 5, None),
])
def test_supervisor_names_what_stopped_the_job(body, rc, says, tmp_path, monkeypatch, capsys):
    from jaxcomp.distributed.supervise import needs_supervisor, supervise

    (tmp_path / "job_under_test.py").write_text(body + "\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    assert needs_supervisor("127.0.0.1:5000", 2, 1, env={})
    assert not needs_supervisor("127.0.0.1:5000", 2, 1, env={"JAXCOMP_SUPERVISED": "1"})
    assert supervise("job_under_test", [], 1, prefix="jaxcomp sweep: error") == rc
    err = capsys.readouterr().err.strip().splitlines()
    if says is None:
        assert not any("distributed:" in line for line in err)
    else:
        assert err[-1].startswith("jaxcomp sweep: error: distributed: process 1 ") and \
            says in err[-1], err[-1]


def test_supervised_job_dies_with_its_supervisor(tmp_path):
    """Killing the supervisor (SIGKILL: it cannot forward anything) kills the job too."""
    (tmp_path / "sleepy_job.py").write_text(
        "import os, time\n"
        "from jaxcomp.distributed.supervise import die_with_supervisor\n"
        "die_with_supervisor()\n"
        "print(os.getpid(), flush=True)\n"
        "time.sleep(120)\n")
    parent = subprocess.Popen(
        [sys.executable, "-c", "from jaxcomp.distributed.supervise import supervise; "
                               "supervise('sleepy_job', [], 1)"],
        env={**os.environ, "PYTHONPATH": f"{tmp_path}:{ROOT}"},
        stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 10
        state = "?"
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{child}/status") as f:
                    state = next(line for line in f if line.startswith("State:"))
            except FileNotFoundError:
                state = "gone"
            if state == "gone" or "zombie" in state:
                break
            time.sleep(0.05)
        assert state == "gone" or "zombie" in state, state
    finally:
        parent.kill()
