"""Scale-out overhead: a 32-setting vectorized sweep of a small MLP with its
settings split over 8 simulated CPU devices (mesh ``sweep=8``) vs the same
sweep on 1 device.

The 8 "devices" share this machine's cores, so no speed-up is possible: the
ratio of throughputs (8 devices / 1 device) measures the cost of sharding the
sweep axis (per-device dispatch, smaller per-device matmuls, collectives for
the replicated metrics). Target: >= 0.8. Because wall-clock time on a shared
machine drifts with other processes' load, the process-CPU-time ratio is
reported beside it.

Two programs are measured: ``library`` (``jaxcomp.distributed.vectorized``, the
epoch of ``fit_stacked``: all settings see one data order) reports
``sweep_axis_efficiency_8cpu``; ``cli`` (``jaxcomp.sweep.vectorized``, what
``jaxcomp sweep`` runs for a vectorized group: each setting its own data order,
gathered inside the program) reports ``cli_sweep_axis_efficiency_8cpu``.

Each variant runs in its own subprocess (``XLA_FLAGS`` must be set before JAX
is imported); the two alternate (interleaved), ``--reps`` times each; each child
compiles and warms up, then times ``--epochs`` epochs and reports their median
wall and process-CPU times. The result is the median over the children.

Usage::

    python benchmarks/scale.py                     # both programs; JSON lines only
    python benchmarks/scale.py --programs cli      # only what jaxcomp sweep runs

Output: one JSON line per measurement, ``{"name", "value", "unit", "target",
"ok", ...}``; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAMS = {"library": "jaxcomp.distributed.vectorized (fit_stacked's epoch)",
            "cli": "jaxcomp.sweep.vectorized.VectorizedProgram (what jaxcomp sweep runs)"}


def child_cli(args: argparse.Namespace) -> None:
    """The program ``jaxcomp sweep`` runs for a vectorized group: per-setting data
    orders, settings over ``sweep`` (none on 1 device: the CLI uses no mesh there)."""
    import jax
    import numpy as np
    import optax

    from jaxcomp.data import synthetic
    from jaxcomp.distributed import make_mesh
    from jaxcomp.distributed.sharding import put_global, replicated, shard_stacked
    from jaxcomp.models import get_model
    from jaxcomp.sweep.vectorized import VectorizedProgram, epoch_permutations, stack
    from jaxcomp.train import init_state

    assert jax.device_count() == args.devices, jax.devices()
    mesh = make_mesh({"sweep": args.devices}) if args.devices > 1 else None
    ds = synthetic(num_train=args.num_train, num_test=64, shape=(8, 8, 1), num_classes=4)
    model = get_model("mlp", input_shape=ds.input_shape, num_classes=4, features=(64, 32))
    tx = optax.sgd(0.05)
    seeds = list(range(args.settings))
    state = stack([init_state(model, ds, tx, seed=s) for s in seeds])
    prog = VectorizedProgram(model, tx, batch_size=args.batch_size, mesh=mesh)
    if mesh is None:
        x, y = jax.numpy.asarray(ds.x_train), jax.numpy.asarray(ds.y_train)
    else:
        prog.note_shared(state)
        state = shard_stacked(state, mesh)
        x, y = put_global((ds.x_train, ds.y_train), replicated(mesh))
    steps = args.num_train // args.batch_size
    walls, cpus = [], []
    for e in range(args.epochs + 1):            # epoch 0 compiles and warms up
        perms = epoch_permutations(args.num_train, seeds, e, steps * args.batch_size)
        perms = jax.numpy.asarray(perms) if mesh is None else shard_stacked(perms, mesh)
        jax.block_until_ready(perms)
        t0, c0 = time.perf_counter(), time.process_time()
        state, m = prog.epoch(state, x, y, perms, None, {})
        jax.block_until_ready((state, m))
        if e:
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
    assert prog.compiles == 1, prog.compiles
    print(json.dumps({"wall": statistics.median(walls), "cpu": statistics.median(cpus),
                      "loss": float(np.mean(np.asarray(m["loss"])))}))


def child(args: argparse.Namespace) -> None:
    import jax
    import numpy as np
    import optax

    from jaxcomp.data import synthetic
    from jaxcomp.distributed import make_mesh
    from jaxcomp.distributed.feed import epoch_arrays
    from jaxcomp.distributed.sharding import stacked_shardings
    from jaxcomp.distributed.vectorized import init_stacked
    from jaxcomp.engine import Programs
    from jaxcomp.models import get_model

    assert jax.device_count() == args.devices, jax.devices()
    mesh = make_mesh({"sweep": args.devices})
    ds = synthetic(num_train=args.num_train, num_test=64, shape=(8, 8, 1), num_classes=4)
    model = get_model("mlp", input_shape=ds.input_shape, num_classes=4, features=(64, 32))
    tx = optax.sgd(0.05)
    state = init_stacked(model, ds, tx, seeds=list(range(args.settings)), mesh=mesh)
    sh = stacked_shardings(mesh, state)
    progs = Programs(model, tx, batch_size=args.batch_size, mesh=mesh, stacked=True,
                     state_sharding=sh)
    steps = args.num_train // args.batch_size
    walls, cpus = [], []
    for e in range(args.epochs + 1):            # epoch 0 compiles and warms up
        order = np.random.default_rng([0, e]).permutation(args.num_train)
        xs, ys = epoch_arrays(mesh, ds.x_train, ds.y_train,
                              order[: steps * args.batch_size].reshape(steps, args.batch_size))
        jax.block_until_ready((xs, ys))
        t0, c0 = time.perf_counter(), time.process_time()
        state, m = progs.epoch(state, {"x": xs, "y": ys}, None)
        jax.block_until_ready((state, m))
        if e:
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
    print(json.dumps({"wall": statistics.median(walls), "cpu": statistics.median(cpus),
                      "loss": float(np.mean(np.asarray(m["loss"])))}))


def run_child(devices: int, program: str, args: argparse.Namespace) -> dict:
    sys.path.insert(0, ROOT)
    from jaxcomp.distributed.launch import run_local

    argv = [sys.executable, os.path.abspath(__file__), "--child", "--devices", str(devices),
            "--programs", program,
            "--settings", str(args.settings), "--epochs", str(args.epochs),
            "--num-train", str(args.num_train), "--batch-size", str(args.batch_size)]
    r = run_local(argv, num_devices=devices, timeout_s=args.timeout, cwd=ROOT)
    if r.returncode != 0:
        raise SystemExit(f"child with {devices} devices failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--devices", type=int, default=8)
    p.add_argument("--settings", type=int, default=32)
    p.add_argument("--epochs", type=int, default=5, help="timed epochs per child")
    p.add_argument("--reps", type=int, default=5, help="children per variant (>= 5)")
    p.add_argument("--num-train", type=int, default=8192)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--programs", default="library,cli",
                   help="comma-separated: library (fit_stacked's epoch: one data order for "
                        "all settings), cli (jaxcomp sweep's vectorized program)")
    args = p.parse_args()
    programs = args.programs.split(",")
    if args.child:
        (child_cli if programs == ["cli"] else child)(args)
        return
    for program in programs:
        if program not in PROGRAMS:
            raise SystemExit(f"--programs: got {program!r}; allowed {', '.join(PROGRAMS)}")
    res = {(p_, n): [] for p_ in programs for n in (1, args.devices)}
    for rep in range(args.reps):
        for key in res:                          # interleaved
            res[key].append(run_child(key[1], key[0], args))
            print(f"rep {rep} {key}: {res[key][-1]}", file=sys.stderr, flush=True)
    for program in programs:
        report(program, {n: res[(program, n)] for n in (1, args.devices)}, args)


def report(program: str, res: dict[int, list[dict]], args: argparse.Namespace) -> None:
    prefix = "" if program == "library" else "cli_"
    med = {n: {k: statistics.median(r[k] for r in rs) for k in ("wall", "cpu")}
           for n, rs in res.items()}
    work = args.settings * (args.num_train // args.batch_size) * args.batch_size
    thr = {n: work / med[n]["wall"] for n in med}
    ratio = thr[args.devices] / thr[1]
    losses = {n: [r["loss"] for r in rs] for n, rs in res.items()}
    print(json.dumps({
        "name": f"{prefix}sweep_axis_efficiency_{args.devices}cpu", "value": round(ratio, 3),
        "unit": "x (throughput 8 dev / 1 dev)", "target": 0.8, "ok": ratio >= 0.8,
        "program": PROGRAMS[program],
        "settings": args.settings, "epoch_wall_s_1dev": round(med[1]["wall"], 4),
        f"epoch_wall_s_{args.devices}dev": round(med[args.devices]["wall"], 4),
        "epoch_cpu_s_1dev": round(med[1]["cpu"], 4),
        f"epoch_cpu_s_{args.devices}dev": round(med[args.devices]["cpu"], 4),
        "cpu_ratio": round(med[1]["cpu"] / med[args.devices]["cpu"], 3),
        "reps": args.reps, "epochs_per_rep": args.epochs,
        "same_loss": bool(abs(losses[1][0] - losses[args.devices][0]) < 1e-4)}), flush=True)
    cpu_ratio = med[1]["cpu"] / med[args.devices]["cpu"]
    print(json.dumps({
        "name": f"{prefix}sweep_axis_cpu_efficiency_{args.devices}cpu",
        "value": round(cpu_ratio, 3),
        "unit": "x (process CPU time 1 dev / 8 dev per epoch)", "target": 0.8,
        "ok": cpu_ratio >= 0.8, "note": "robust to other load on the machine; wall-clock "
                                        "ratio above is the headline"}))
    print(json.dumps({"name": f"{prefix}sweep_throughput_1cpu", "value": round(thr[1]),
                      "unit": "setting-examples/s", "target": None, "ok": True}))
    print(json.dumps({"name": f"{prefix}sweep_throughput_{args.devices}cpu",
                      "value": round(thr[args.devices]), "unit": "setting-examples/s",
                      "target": None, "ok": True}), flush=True)

if __name__ == "__main__":
    main()
