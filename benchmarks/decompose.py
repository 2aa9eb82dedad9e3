"""Decomposition benchmarks (JSON lines on stdout; details on stderr).

* ``tucker2_time_vs_tensorly`` / ``cp_time_vs_tensorly``: decompose every conv kernel
  of the reference CNN (ResCNN) plus (3,3,64,64) and (3,3,128,128) kernels with
  jaxcomp (compiled, after warm-up) and with tensorly's numpy backend: equal ranks,
  equal iteration counts, equal initialization (CP), one BLAS thread on both sides,
  interleaved, median of ``--repeats`` runs. Value: jaxcomp time / tensorly time.
  The reconstruction errors of both are reported; ``ok`` also needs ours
  ≤ tensorly's × 1.01 + 1e-6 on every kernel.
* ``lowrank_speedup_vs_flops``: LeNet-300-100 with its first layer at rank 32, forward
  pass at batch 1024: measured speed-up / FLOP reduction.

Run: ``.venv/bin/python benchmarks/decompose.py [--repeats 7]``
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

from jaxcomp.decompose import cp_als, cp_reconstruct, factorize, layer_shapes, ledger, totals
from jaxcomp.decompose.blas import one_blas_thread
from jaxcomp.decompose.cp import svd_init
from jaxcomp.decompose.tucker import tucker2, tucker2_reconstruct
from jaxcomp.models import get_model


def emit(name, value, unit, target, ok, **extra):
    print(json.dumps({"name": name, "value": value, "unit": unit, "target": target,
                      "ok": bool(ok), **extra}), flush=True)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def kernels() -> dict[str, np.ndarray]:
    m = get_model("rescnn", input_shape=(28, 28, 1))
    p, _ = m.init(jax.random.key(0), jnp.ones((1, 28, 28, 1)))
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(p)[0]:
        if np.ndim(leaf) == 4:
            out["/".join(str(k.key) for k in path)] = np.asarray(leaf, np.float32)
    rng = np.random.default_rng(0)
    out["random64"] = rng.normal(size=(3, 3, 64, 64)).astype(np.float32)
    out["random128"] = rng.normal(size=(3, 3, 128, 128)).astype(np.float32)
    return out


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def interleaved(fns: dict, repeats: int) -> dict:
    wall = {k: [] for k in fns}
    cpu = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            f()
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    return {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in fns}


def bench_tucker(ks, repeats, n_iter=5):
    import tensorly as tl
    from tensorly.decomposition import partial_tucker

    tl.set_backend("numpy")
    ranks = {n: (max(1, k.shape[2] // 2), max(1, k.shape[3] // 2)) for n, k in ks.items()}
    ks_dev = {n: jnp.asarray(k) for n, k in ks.items()}

    def ours():
        return {n: jax.block_until_ready(tucker2(ks_dev[n], ranks[n], n_iter=n_iter))
                for n in ks}

    def theirs():
        return {n: partial_tucker(k, rank=list(ranks[n]), modes=[2, 3], n_iter_max=n_iter,
                                  tol=0)[0] for n, k in ks.items()}

    ours()  # warm-up (compile)
    t = interleaved({"jaxcomp": ours, "tensorly": theirs}, repeats)
    o, th = ours(), theirs()
    errs = {}
    for n, k in ks.items():
        core, factors = th[n]
        errs[n] = (rel(tucker2_reconstruct(o[n]), k),
                   rel(tl.tenalg.multi_mode_dot(core, factors, modes=[2, 3]), k))
    return t, errs


def bench_cp(ks, repeats, n_iter=20, rank=16):
    import tensorly as tl
    from tensorly.decomposition import parafac

    tl.set_backend("numpy")
    ks_dev = {n: jnp.asarray(k) for n, k in ks.items()}
    inits = {n: [np.asarray(f) for f in svd_init(ks_dev[n], rank, jax.random.key(i))]
             for i, n in enumerate(ks)}
    inits_dev = {n: [jnp.asarray(f) for f in v] for n, v in inits.items()}

    def ours():
        return {n: jax.block_until_ready(cp_als(ks_dev[n], rank, n_iter=n_iter,
                                                init=inits_dev[n])) for n in ks}

    def theirs():
        return {n: parafac(k, rank, n_iter_max=n_iter, tol=0,
                           init=tl.cp_tensor.CPTensor((np.ones(rank, np.float32),
                                                       [f.copy() for f in inits[n]])))
                for n, k in ks.items()}

    ours()
    t = interleaved({"jaxcomp": ours, "tensorly": theirs}, repeats)
    o, th = ours(), theirs()
    errs = {n: (rel(cp_reconstruct(o[n]), k), rel(tl.cp_to_tensor(th[n]), k))
            for n, k in ks.items()}
    return t, errs


def report_decomp(name, target, t, errs):
    ratio = t["jaxcomp"][0] / t["tensorly"][0]
    cpu_ratio = t["jaxcomp"][1] / t["tensorly"][1]
    err_ok = all(o <= th * 1.01 + 1e-6 for o, th in errs.values())
    for n, (o, th) in errs.items():
        log(f"{name} {n}: rel. error jaxcomp {o:.6g} tensorly {th:.6g}")
    emit(name, round(ratio, 4), "x (time ratio, lower is better)", f"<= {target}",
         ratio <= target and err_ok, jaxcomp_s=t["jaxcomp"][0], tensorly_s=t["tensorly"][0],
         cpu_ratio=round(cpu_ratio, 4), errors_no_worse=err_ok,
         max_error_ratio=max(o / th for o, th in errs.values()))


def bench_lowrank(repeats, batch=1024, rank=32):
    m = get_model("lenet300", input_shape=(28, 28, 1))
    p, s = m.init(jax.random.key(0), jnp.ones((1, 28, 28, 1)))
    spec = {"Dense_0": {"method": "svd", "rank": rank}}
    f = factorize(m, p, spec)
    rows = ledger(layer_shapes(m, p, s, (28, 28, 1)), spec)
    tot = totals(rows)
    flop_reduction = tot["flops_before"] / tot["flops_after"]
    x = jax.random.normal(jax.random.key(1), (batch, 28, 28, 1))
    dense = jax.jit(lambda p, x: m.apply(p, s, x)[0])
    fact = jax.jit(lambda p, x: f.model.apply(p, s, x)[0])
    inner = 20

    def run(fn, params):
        def go():
            for _ in range(inner):
                out = fn(params, x)
            jax.block_until_ready(out)
        return go

    fd, ff = run(dense, p), run(fact, f.params)
    fd(), ff()
    t = interleaved({"dense": fd, "factorized": ff}, repeats)
    speedup = t["dense"][0] / t["factorized"][0]
    value = speedup / flop_reduction
    emit("lowrank_speedup_vs_flops", round(value, 4), "speed-up / FLOP reduction", ">= 0.7",
         value >= 0.7, speedup=round(speedup, 3), flop_reduction=round(flop_reduction, 3),
         dense_ms=1e3 * t["dense"][0] / inner, factorized_ms=1e3 * t["factorized"][0] / inner,
         cpu_speedup=round(t["dense"][1] / t["factorized"][1], 3), batch=batch, rank=rank)


def bench_threads(ks, repeats, n_iter=5):
    """jaxcomp Tucker-2 over all kernels with the default BLAS threads vs one thread."""
    from threadpoolctl import threadpool_limits

    from jaxcomp.decompose.blas import _load_lapack

    _load_lapack()
    ranks = {n: (max(1, k.shape[2] // 2), max(1, k.shape[3] // 2)) for n, k in ks.items()}
    ks_dev = {n: jnp.asarray(k) for n, k in ks.items()}

    def ours():
        return {n: jax.block_until_ready(tucker2(ks_dev[n], ranks[n], n_iter=n_iter))
                for n in ks}

    def one():
        with threadpool_limits(1, "blas"):
            return ours()

    ours()
    t = interleaved({"default": ours, "one": one}, repeats)
    ratio = t["default"][0] / t["one"][0]
    emit("tucker2_default_vs_one_blas_thread", round(ratio, 3),
         "x (default-threads time / one-thread time)", "report", True,
         default_s=t["default"][0], one_thread_s=t["one"][0])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--only", default="", help="comma-separated subset: tucker,cp,threads,lowrank")
    args = ap.parse_args(argv)
    only = set(filter(None, args.only.split(",")))
    ks = kernels()
    log("kernels:", {n: k.shape for n, k in ks.items()})
    with one_blas_thread():
        if not only or "tucker" in only:
            report_decomp("tucker2_time_vs_tensorly", 0.33, *bench_tucker(ks, args.repeats))
        if not only or "cp" in only:
            report_decomp("cp_time_vs_tensorly", 0.5, *bench_cp(ks, args.repeats))
    if not only or "threads" in only:
        bench_threads(ks, args.repeats)
    if not only or "lowrank" in only:
        bench_lowrank(args.repeats)


if __name__ == "__main__":
    main()
