"""One-shot LLM pruning benchmark (JSON lines on stdout; diagnostics on stderr).

Model: benchmarks/gptq.py's 4 pre-LN transformer blocks, width 256 (4 attention
linears 256×256, MLP 256×1024 and 1024×256; random weights), 128 calibration
sequences × 256 tokens (8 batches of 16). The 24 layers' input statistics are
collected once (dense blocks); then, per method, the pruning of all 24 layers alone:

* ``wanda_seconds``: :func:`jaxcomp.prune.oneshot.wanda` at 50% unstructured plus
  at 2:4 on every layer (median of 3 warm runs; first run with compilation beside);
* ``sparsegpt_seconds``: :func:`jaxcomp.prune.oneshot.sparsegpt` likewise (block 128);
* ``*_numpy_seconds``: plain unjitted numpy implementations of the same algorithms
  (float32, SparseGPT with the same lazy blocks) on the same layers;
* ``prune_blocks_seconds``: one full sequential SparseGPT 50% pass (statistics,
  pruning, re-running the pruned blocks), compilation included.

Targets: wanda ≤ 3 s, sparsegpt ≤ 15 s. Process CPU time is given beside wall time:
other processes share this machine. Run: ``python benchmarks/sparsity_llm.py``.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from _reference import layer_hessians, np_prep  # noqa: E402
from gptq import BATCH, SEQS, D, T, make_blocks, timed  # noqa: E402
from harness import emit, log  # noqa: E402

from jaxcomp.prune import oneshot  # noqa: E402

PATTERNS = (dict(sparsity=0.5), dict(nm=(2, 4)))


def np_wanda(w, xnorm, sparsity=None, nm=None):
    s = np.abs(w) * xnorm[:, None]
    if nm:
        n, m = nm
        g = s.reshape(-1, m, s.shape[1])
        keep = np.zeros_like(g, bool)
        np.put_along_axis(keep, np.argsort(-g, 1, kind="stable")[:, :n], True, 1)
        keep = keep.reshape(s.shape)
    else:
        k = int(round(sparsity * s.shape[0]))
        keep = np.ones_like(s, bool)
        np.put_along_axis(keep, np.argsort(s, 0, kind="stable")[:k], False, 0)
    return np.where(keep, w, 0)


def np_sparsegpt(w, h, sparsity=None, nm=None, damp=0.01, bs=128):
    """SparseGPT in plain numpy (float32), lazy blocks as the jitted version."""
    W, U = np_prep(w, h, damp)
    n = W.shape[1]
    for i1 in range(0, n, bs):
        i2 = min(i1 + bs, n)
        W1, E1, U1 = W[:, i1:i2].copy(), np.zeros((W.shape[0], i2 - i1), np.float32), \
            U[i1:i2, i1:i2]
        d = np.diag(U1)
        prune = np.zeros(W1.shape, bool)
        if not nm:
            sc = (W1 ** 2 / d ** 2).reshape(-1)
            prune.reshape(-1)[np.argsort(sc, kind="stable")[:int(round(sparsity * sc.size))]] \
                = True
        for i in range(i2 - i1):
            if nm and i % nm[1] == 0:
                g = W1[:, i:i + nm[1]] ** 2 / d[i:i + nm[1]] ** 2
                p = np.ones(g.shape, bool)
                np.put_along_axis(p, np.argsort(-g, 1, kind="stable")[:, :nm[0]], False, 1)
                prune[:, i:i + nm[1]] = p
            q = np.where(prune[:, i], 0, W1[:, i])
            err = (W1[:, i] - q) / U1[i, i]
            W1[:, i:] -= np.outer(err, U1[i, i:])
            W1[:, i] = q
            E1[:, i] = err
        W[:, i1:i2] = W1
        W[:, i2:] -= E1 @ U[i1:i2, i2:]
    return W.T


def main():
    blocks = make_blocks(jax.random.key(0))
    keys = jax.random.split(jax.random.key(1), SEQS // BATCH)
    xs = [jax.random.normal(k, (BATCH, T, D)) for k in keys]
    ws, hs = layer_hessians(blocks, xs)
    norms = [np.sqrt(np.diag(np.asarray(h)) * SEQS * T / 2) for h in hs]
    norms_j = [jax.numpy.asarray(v) for v in norms]

    def ours(fn):
        def go():
            jax.block_until_ready([fn(w, i, pat) for i, w in enumerate(ws) for pat in PATTERNS])
        return go

    wanda = ours(lambda w, i, pat: oneshot.wanda(w, norms_j[i], **pat)[0])
    sgpt = ours(lambda w, i, pat: oneshot.sparsegpt(w, hs[i], **pat)[0])
    ws_np, hs_np = [np.asarray(w) for w in ws], [np.asarray(h) for h in hs]
    for name, fn, ref in (
            ("wanda", wanda, lambda: [np_wanda(w, norms[i], **p) for i, w in enumerate(ws_np)
                                      for p in PATTERNS]),
            ("sparsegpt", sgpt, lambda: [np_sparsegpt(w, hs_np[i], **p)
                                         for i, w in enumerate(ws_np) for p in PATTERNS])):
        t0 = time.perf_counter()
        fn()
        first = time.perf_counter() - t0
        wall, cpu = timed(fn)
        rw, rc = timed(ref, repeats=1)
        log(f"{name}: {wall:.3f}s warm ({first:.2f}s first), numpy {rw:.2f}s")
        emit(f"{name}_seconds", round(wall, 3), "s", 3.0 if name == "wanda" else 15.0,
             cpu_s=round(cpu, 3), first_call_s=round(first, 3), layers=len(ws),
             patterns="50% and 2:4")
        emit(f"{name}_numpy_seconds", round(rw, 3), "s", None, ok=True, cpu_s=round(rc, 3),
             speedup=round(rw / wall, 2))
    diff = float(np.max(np.abs(np.asarray(oneshot.sparsegpt(ws[0], hs[0], sparsity=0.5)[0])
                               - np_sparsegpt(ws_np[0], hs_np[0], sparsity=0.5))))
    log(f"sparsegpt vs numpy, first layer: max |diff| {diff:.2e}")
    t0, c0 = time.perf_counter(), time.process_time()
    res = oneshot.prune_blocks(blocks, xs, "sparsegpt", sparsity=0.5)
    emit("prune_blocks_seconds", round(time.perf_counter() - t0, 3), "s", None, ok=True,
         cpu_s=round(time.process_time() - c0, 3), prune_only_s=round(res.prune_seconds, 3),
         sparsity=res.sparsity, max_abs_diff_first_layer=diff)


if __name__ == "__main__":
    main()
