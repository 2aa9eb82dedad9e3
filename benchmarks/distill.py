"""Distillation benchmarks (JSON lines on stdout; details on stderr).

* ``kd_step_ratio`` — one jitted KD step (frozen 1200-1200 teacher forward +
  LeNet-300-100 student train step, batch 128) vs the student train step and
  the teacher forward timed separately. Target ≤ 1.05.
* ``cached_teacher_epoch_ratio`` — a ``lax.scan`` epoch with the teacher's
  logits cached vs the same epoch running the live teacher. Target ≤ 0.7.

Variants are compared in one process, interleaved, median of ``--repeats`` runs;
process CPU time is recorded beside wall time.

Run:
    .venv/bin/python benchmarks/distill.py [--repeats 7] [--steps 50] [--epoch-examples 12800]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxcomp.distill as kd
from jaxcomp.data import Dataset
from jaxcomp.models import get_model
from jaxcomp.train import create_state, make_train_step


def _timed(fn):
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def _emit(name, value, unit, target, op, **extra):
    ok = value <= target if op == "<=" else value >= target
    print(json.dumps({"name": name, "value": round(value, 4), "unit": unit, "target": target,
                      "ok": bool(ok), **extra}), flush=True)


def _data(n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 28, 28, 1), np.float32)
    y = rng.integers(0, 10, n).astype(np.int32)
    return x, y


def bench_kd_step(repeats: int, steps: int) -> None:
    student = get_model("lenet300", input_shape=(28, 28, 1))
    teacher = get_model("mlp", input_shape=(28, 28, 1), features=(1200, 1200))
    x, y = _data(128 * steps)
    xb = jnp.asarray(x).reshape(steps, 128, 28, 28, 1)
    yb = jnp.asarray(y).reshape(steps, 128)
    tv = teacher.init(jax.random.key(1), xb[0, :1])
    tx = optax.adam(1e-3)
    d = kd.distiller(student, teacher, tx, method="kd")
    ls = d.loss_state(temperature=4.0, alpha=0.9)
    states = {"kd": d.init(jax.random.key(0), xb[0, :1], tv)}
    sp, sms = student.init(jax.random.key(0), xb[0, :1])
    states["student"] = create_state(sp, sms, tx, key=jax.random.key(2))
    student_step = make_train_step(student, tx)
    teacher_fwd = jax.jit(lambda p, s, x: teacher.apply(p, s, x, train=False)[0])

    def run_kd():
        s = states["kd"]
        for i in range(steps):
            s, m = d.step(s, {"x": xb[i], "y": yb[i], "loss_state": ls}, tv)
        jax.block_until_ready(m["loss"])
        states["kd"] = s

    def run_student():
        s = states["student"]
        for i in range(steps):
            s, m = student_step(s, {"x": xb[i], "y": yb[i]})
        jax.block_until_ready(m["loss"])
        states["student"] = s

    def run_teacher():
        for i in range(steps):
            out = teacher_fwd(tv[0], tv[1], xb[i])
        jax.block_until_ready(out)

    variants = {"kd": run_kd, "student": run_student, "teacher": run_teacher}
    for f in variants.values():  # compile + warm up
        f()
    times = {k: [] for k in variants}
    for _ in range(repeats):
        for k, f in variants.items():
            times[k].append(_timed(f))
    wall = {k: statistics.median(w for w, _ in v) for k, v in times.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in times.items()}
    ratio = wall["kd"] / (wall["student"] + wall["teacher"])
    print(f"kd_step: wall per step (ms) {({k: 1e3 * v / steps for k, v in wall.items()})}",
          file=sys.stderr)
    _emit("kd_step_ratio", ratio, "x", 1.05, "<=",
          kd_ms=1e3 * wall["kd"] / steps, student_ms=1e3 * wall["student"] / steps,
          teacher_ms=1e3 * wall["teacher"] / steps,
          cpu_ratio=round(cpu["kd"] / (cpu["student"] + cpu["teacher"]), 4),
          repeats=repeats, steps=steps, batch=128)


def bench_cached_epoch(repeats: int, n: int) -> None:
    x, y = _data(n, seed=1)
    ds = Dataset("bench", x, y, x[:256], y[:256], 10)
    student = get_model("lenet300", input_shape=(28, 28, 1))
    teacher = get_model("mlp", input_shape=(28, 28, 1), features=(1200, 1200))
    tv = teacher.init(jax.random.key(1), jnp.asarray(x[:1]))
    tx = optax.adam(1e-3)
    ls = kd.loss_state(temperature=4.0, alpha=0.9)
    w0, c0 = time.perf_counter(), time.process_time()
    cache = kd.teacher_outputs(teacher, *tv, x)
    cache_wall, cache_cpu = time.perf_counter() - w0, time.process_time() - c0
    from jaxcomp.train.step import train_step_fn

    live_fn = kd.make_loss_fn("kd", teacher=teacher, teacher_params=tv[0], teacher_state=tv[1])
    cached_fn = kd.make_loss_fn("kd")
    epochs = {
        "live": (kd.make_data_epoch(train_step_fn(student, tx, None, live_fn), 128), None),
        "cached": (kd.make_data_epoch(train_step_fn(student, tx, None, cached_fn), 128), cache),
    }

    data = {"x": jnp.asarray(ds.x_train), "y": jnp.asarray(ds.y_train)}
    perm = jnp.asarray(np.random.default_rng(0).permutation(n)[: n // 128 * 128])
    params, ms = student.init(jax.random.key(0), data["x"][:1])
    states = {k: create_state(jax.tree.map(jnp.array, params), ms, tx, key=jax.random.key(2))
              for k in epochs}

    def runner(name):
        fn, c = epochs[name]
        d = {**data, **({k: jnp.asarray(v) for k, v in c.items()} if c else {})}

        def run():
            states[name], m = fn(states[name], d, perm, ls)
            jax.block_until_ready(m["loss"])
        return run

    variants = {k: runner(k) for k in epochs}
    for f in variants.values():
        f()
    times = {k: [] for k in variants}
    for _ in range(repeats):
        for k, f in variants.items():
            times[k].append(_timed(f))
    wall = {k: statistics.median(w for w, _ in v) for k, v in times.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in times.items()}
    print(f"cached_epoch: wall (s) {wall}, cache build {cache_wall:.2f} s", file=sys.stderr)
    _emit("cached_teacher_epoch_ratio", wall["cached"] / wall["live"], "x", 0.7, "<=",
          cached_s=wall["cached"], live_s=wall["live"],
          cpu_ratio=round(cpu["cached"] / cpu["live"], 4), cache_build_s=round(cache_wall, 3),
          cache_build_cpu_s=round(cache_cpu, 3), examples=n, repeats=repeats)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--epoch-examples", type=int, default=12800)
    a = p.parse_args(argv)
    bench_kd_step(a.repeats, a.steps)
    bench_cached_epoch(a.repeats, a.epoch_examples)


if __name__ == "__main__":
    main()
