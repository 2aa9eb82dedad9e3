"""Benchmark: does physically removing neurons give the speed-up its FLOPs promise?

LeNet-300-100 with 50% of each hidden layer's neurons removed (by L1 norm) through
:func:`jaxcomp.prune.surgery.shrink`; jitted forward pass at batch 1024. The
dense, the shrunk (params-driven) and the rebuilt ``MLP(features=(150, 50))``
forward passes are timed interleaved, median of ``REPEATS`` rounds of ``CALLS``
calls each; process CPU time is recorded beside wall time.

Prints one JSON line per metric on stdout (details go to extra keys):
``surgery_speedup_vs_flops`` = (dense time / shrunk time) / (dense FLOPs / shrunk FLOPs),
target >= 0.8.

Run: ``.venv/bin/python benchmarks/prune_surgery.py``
"""

from __future__ import annotations

import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

BATCH = 1024
REPEATS = 9
CALLS = 50


def _flops(widths: list[int]) -> int:
    """Multiply-adds of the dense layers of an MLP with these widths (input first)."""
    return sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=True))


def _time(fn, args) -> tuple[float, float]:
    jax.block_until_ready(fn(*args))
    w, c = time.perf_counter(), time.process_time()
    for _ in range(CALLS):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - w) / CALLS, (time.process_time() - c) / CALLS


def main() -> None:
    from jaxcomp.models import get_model
    from jaxcomp.prune.surgery import rebuild_linen, shrink

    model = get_model("lenet300", input_shape=(28, 28, 1))
    x = jnp.asarray(np.random.default_rng(0).random((BATCH, 28, 28, 1), np.float32))
    params, state = jax.jit(model.init)(jax.random.key(0), x[:2])
    small = shrink(model, params, state, x[:8], sparsity=0.5)
    rebuilt = rebuild_linen(model, small)
    fns = {
        "dense": (jax.jit(lambda p, v: model.apply(p, {}, v)[0]), (params, x)),
        "shrunk": (jax.jit(lambda p, v: small.model.apply(p, {}, v)[0]), (small.params, x)),
        "rebuilt": (jax.jit(lambda p, v: rebuilt.apply(p, {}, v)[0]), (small.params, x)),
    }
    wall = {k: [] for k in fns}
    cpu = {k: [] for k in fns}
    for _ in range(REPEATS):  # interleaved
        for k, (fn, args) in fns.items():
            w, c = _time(fn, args)
            wall[k].append(w)
            cpu[k].append(c)
    med = {k: statistics.median(v) for k, v in wall.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    widths = [784, small.widths["Dense_0/kernel"], small.widths["Dense_1/kernel"], 10]
    flop_ratio = _flops([784, 300, 100, 10]) / _flops(widths)
    speedup = med["dense"] / med["shrunk"]
    value = speedup / flop_ratio
    print(json.dumps({
        "name": "surgery_speedup_vs_flops", "value": round(value, 3), "unit": "ratio",
        "target": 0.8, "ok": bool(value >= 0.8),
        "speedup": round(speedup, 3), "flop_ratio": round(flop_ratio, 3),
        "speedup_rebuilt_module": round(med["dense"] / med["rebuilt"], 3),
        "speedup_cpu_time": round(med_cpu["dense"] / med_cpu["shrunk"], 3),
        "dense_ms": round(1e3 * med["dense"], 3), "shrunk_ms": round(1e3 * med["shrunk"], 3),
        "rebuilt_ms": round(1e3 * med["rebuilt"], 3), "widths": widths[1:3],
        "batch": BATCH, "repeats": REPEATS, "calls_per_repeat": CALLS,
        "device": jax.devices()[0].platform,
    }))


if __name__ == "__main__":
    main()
