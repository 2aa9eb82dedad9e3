"""Pruning benchmarks. Prints one JSON line per measurement on stdout (details on stderr).

    .venv/bin/python benchmarks/prune.py            # all
    .venv/bin/python benchmarks/prune.py --only masked_step_ratio_mlp

* ``masked_step_ratio_mlp`` / ``_cnn``: a train step with gradual magnitude pruning
  as a config run trains it (the pruner's state as the compression state in the run's
  chain of transforms, the optimizer wrapped by ``masked_updates``; cubic schedule,
  masks recomputed every 100 steps — the update cost amortized in) over the plain
  step; LeNet-300-100 /
  LeNet-5, batch 128. Target ≤ 1.05. Beside it (``masked_optimizer_ratio``): the
  standalone ``masked_optimizer`` (masks in the optimizer state) in the same rounds.
* ``global_mask_vs_sort_10m``: exact global 90% magnitude mask over 10M params in
  10 leaves vs one jitted ``jnp.sort`` of the same values. Target ≤ 0.1.
* ``sparse_storage_ratio_90``: LeNet-300-100 at 90% sparsity, dense fp32 bytes over
  bitmask + values bytes. Target ≥ 5 (the CSR ratio is reported beside it).

Variants are interleaved in one process; the value is the ratio of medians of
>= 5 repeats; process CPU time is recorded beside wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from jaxcomp.core import schedules  # noqa: E402
from jaxcomp.core.transform import named_chain  # noqa: E402
from jaxcomp.models import get_model  # noqa: E402
from jaxcomp.prune import (  # noqa: E402
    encode_tree,
    global_masks,
    masked_optimizer,
    pruner,
    pruning_optimizer,
    pruning_transform,
    tree_nbytes,
)
from jaxcomp.train import create_state, make_train_step  # noqa: E402


def emit(name, value, unit, target, ok, **extra):
    print(json.dumps({"name": name, "value": round(float(value), 4), "unit": unit,
                      "target": target, "ok": bool(ok), **extra}), flush=True)


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    jax.block_until_ready(fn())
    return time.perf_counter() - w, time.process_time() - c


def interleaved(variants: dict, repeats: int):
    wall = {k: [] for k in variants}
    cpu = {k: [] for k in variants}
    for _ in range(repeats):
        for k, fn in variants.items():
            w, c = timed(fn)
            wall[k].append(w)
            cpu[k].append(c)
    return ({k: float(np.median(v)) for k, v in wall.items()},
            {k: float(np.median(v)) for k, v in cpu.items()})


def masked_step_ratio(model_name: str, steps: int, repeats: int):
    model = get_model(model_name, input_shape=(28, 28, 1), num_classes=10)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.random((steps, 128, 28, 28, 1), np.float32))
    y = jnp.asarray(rng.integers(0, 10, (steps, 128)).astype(np.int32))
    params, ms = model.init(jax.random.key(0), x[0, :1])
    sched = schedules.cubic(0.0, 0.9, begin=0, end=10 ** 6, frequency=100)
    t = pruning_transform(pruner("magnitude", sched))
    variants = {"plain": (optax.adam(1e-3), None),  # the run's chain of family transforms:
                "masked": (pruning_optimizer(optax.adam(1e-3), t), named_chain(("prune", t))),
                "masked_optimizer": (masked_optimizer(optax.adam(1e-3),
                                                      pruner("magnitude", sched)), None)}
    runs = {}
    for k, (tx, transform) in variants.items():
        step = make_train_step(model, tx, transform)
        p0 = jax.tree.map(jnp.copy, params)  # each state owns its buffers (donated)
        box = {"s": create_state(p0, ms, tx, key=jax.random.key(1), transform=transform)}

        def run(step=step, box=box):
            s = box["s"]
            for i in range(steps):  # `steps` steps: exactly one mask update (every 100)
                s, m = step(s, {"x": x[i], "y": y[i]})
            box["s"] = s
            return m["loss"]

        run()  # compile + warm up
        runs[k] = run
    wall, cpu = interleaved(runs, repeats)
    return wall["masked"] / wall["plain"], wall, cpu


def mask_vs_sort(repeats: int):
    keys = jax.random.split(jax.random.key(0), 10)
    leaves = {f"layer{i}/kernel": jax.random.normal(k, (1000, 1000)) for i, k in enumerate(keys)}
    mask_fn = jax.jit(lambda d: global_masks({p: jnp.abs(v) for p, v in d.items()}, 0.9))
    sort_fn = jax.jit(lambda d: jnp.sort(jnp.abs(jnp.concatenate(
        [v.reshape(-1) for v in d.values()]))))
    masks = mask_fn(leaves)
    zeros = sum(int((~m).sum()) for m in masks.values())
    exact = zeros == round(0.9 * 10_000_000)
    jax.block_until_ready(sort_fn(leaves))
    wall, cpu = interleaved({"mask": lambda: mask_fn(leaves), "sort": lambda: sort_fn(leaves)},
                            repeats)
    return wall["mask"] / wall["sort"], wall, cpu, exact, zeros


def storage_ratio():
    model = get_model("lenet300", input_shape=(28, 28, 1), num_classes=10)
    params, _ = model.init(jax.random.key(0), jnp.ones((1, 28, 28, 1)))
    t = pruner("magnitude", 0.9)
    s = t.update(params, t.init(params), step=0)
    pruned = jax.tree.map(np.asarray, t.apply(params, s))
    dense = 4 * sum(x.size for x in jax.tree.leaves(pruned))
    bm = tree_nbytes(encode_tree(pruned, "bitmask"))
    csr = tree_nbytes(encode_tree(pruned, "relative", index_bits=5))
    return dense / bm, dense / csr, dense, bm, csr


def main(only: str | None = None, repeats: int = 5) -> None:
    if only in (None, "masked_step_ratio_mlp"):
        r, wall, cpu = masked_step_ratio("lenet300", 200, repeats)
        emit("masked_step_ratio_mlp", r, "x", "<= 1.05", r <= 1.05, wall_s=wall, cpu_s=cpu,
             steps=200, batch=128,
             masked_optimizer_ratio=wall["masked_optimizer"] / wall["plain"])
    if only in (None, "masked_step_ratio_cnn"):
        r, wall, cpu = masked_step_ratio("lenet5", 100, repeats)
        emit("masked_step_ratio_cnn", r, "x", "<= 1.05", r <= 1.05, wall_s=wall, cpu_s=cpu,
             steps=100, batch=128,
             masked_optimizer_ratio=wall["masked_optimizer"] / wall["plain"])
    if only in (None, "global_mask_vs_sort_10m"):
        r, wall, cpu, exact, zeros = mask_vs_sort(repeats)
        emit("global_mask_vs_sort_10m", r, "x", "<= 0.1", r <= 0.1 and exact, wall_s=wall,
             cpu_s=cpu, exact=exact, zeros=zeros)
    if only in (None, "sparse_storage_ratio_90"):
        bm, csr, dense, b1, b2 = storage_ratio()
        emit("sparse_storage_ratio_90", bm, "x", ">= 5", bm >= 5, csr_ratio=round(csr, 4),
             dense_bytes=dense, bitmask_bytes=b1, csr_bytes=b2, index_bits=5)
    other = pathlib.Path(__file__).with_name("prune_surgery.py")
    if only is None and other.exists():
        import importlib.util

        spec = importlib.util.spec_from_file_location("prune_surgery", other)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        mod.main()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=None)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    print(f"[prune bench] pid {os.getpid()} cores {os.cpu_count()}", file=sys.stderr)
    main(a.only, a.repeats)
