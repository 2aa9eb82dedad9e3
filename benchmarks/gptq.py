"""GPTQ benchmark (JSON lines on stdout; diagnostics on stderr).

Model: 4 pre-LN transformer blocks, width 256 (4 attention linears 256×256,
MLP 256×1024 and 1024×256), calibrated on 128 sequences × 256 tokens (8
batches of 16), GPTQ 4-bit, groups of 128, asymmetric.

* ``gptq_seconds``: median of 3 full passes of ``calib.quantize_blocks``
  (statistics, GPTQ of the 24 linears, re-running each quantized block);
  the first pass (compilation included) is reported beside it.
* ``gptq_layers_seconds`` vs ``numpy_ref_seconds``: the GPTQ algorithm alone
  on the same 24 Hessians, jitted ``calib.gptq`` vs a plain unjitted numpy
  implementation of the same blocked algorithm, one layer at a time (median of 3).
  ``gptq_speedup`` is their ratio.
* ``gptq_peak_memory_ratio``: peak extra RSS during one (warm) full pass
  (``VmHWM`` reset to the current RSS right before it) / (fp32 model bytes +
  one block's calibration activations). Process CPU time is given beside wall
  time: other processes share this machine.

Run: ``python benchmarks/gptq.py``.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from _reference import layer_hessians, np_prep  # noqa: E402
from harness import emit, log  # noqa: E402

from jaxcomp.quant import calib  # noqa: E402

D, FF, HEADS, N_BLOCKS = 256, 1024, 4, 4
SEQS, T, BATCH = 128, 256, 16
BITS, GS = 4, 128
LINEARS = ("attn/q/kernel", "attn/k/kernel", "attn/v/kernel", "attn/o/kernel",
           "mlp/up/kernel", "mlp/down/kernel")


def _norm(x, eps=1e-5):
    x = x - x.mean(-1, keepdims=True)
    return x / jnp.sqrt((x * x).mean(-1, keepdims=True) + eps)


def block(p, x, tap):
    b, t, d = x.shape
    h = _norm(x) * p["ln1"]
    q, k, v = (tap(f"attn/{n}/kernel", h) @ p["attn"][n]["kernel"] for n in "qkv")
    q, k, v = (a.reshape(b, t, HEADS, d // HEADS) for a in (q, k, v))
    att = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(d // HEADS)
    att = jnp.where(jnp.tril(jnp.ones((t, t), bool)), att, -1e9)
    o = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(att, -1), v).reshape(b, t, d)
    x = x + tap("attn/o/kernel", o) @ p["attn"]["o"]["kernel"]
    u = jax.nn.gelu(tap("mlp/up/kernel", _norm(x) * p["ln2"]) @ p["mlp"]["up"]["kernel"])
    return x + tap("mlp/down/kernel", u) @ p["mlp"]["down"]["kernel"]


def make_blocks(key):
    out = []
    for kb in jax.random.split(key, N_BLOCKS):
        k = jax.random.split(kb, 6)
        lin = lambda kk, i, o: {"kernel": jax.random.normal(kk, (i, o)) / np.sqrt(i)}  # noqa
        p = {"ln1": jnp.ones(D), "ln2": jnp.ones(D),
             "attn": {n: lin(k[i], D, D) for i, n in enumerate("qkvo")},
             "mlp": {"up": lin(k[4], D, FF), "down": lin(k[5], FF, D)}}
        out.append(calib.Block(block, p, LINEARS))
    return out


def np_gptq(w, h, bits, gs, damp=0.01, bs=128):
    """The blocked GPTQ algorithm in plain numpy (float32), asymmetric codes."""
    W, U = np_prep(w, h, damp)
    n = W.shape[1]
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    Q = np.zeros_like(W)
    for i1 in range(0, n, bs):
        i2 = min(i1 + bs, n)
        W1, E1 = W[:, i1:i2].copy(), np.zeros((W.shape[0], i2 - i1), np.float32)
        U1 = U[i1:i2, i1:i2]
        for i in range(i2 - i1):
            if (i1 + i) % gs == 0:
                g = W1[:, i:i + gs]
                lo, hi = np.minimum(g.min(1), 0), np.maximum(g.max(1), 0)
                s = (hi - lo) / (qmax - qmin)
                s = np.where(s > 0, s, 1)
                z = np.clip(np.round(qmin - lo / s), qmin, qmax)
            q = np.clip(np.round(W1[:, i] / s + z), qmin, qmax)
            dq = (q - z) * s
            Q[:, i1 + i] = dq
            err = (W1[:, i] - dq) / U1[i, i]
            W1[:, i:] -= np.outer(err, U1[i, i:])
            E1[:, i] = err
        W[:, i2:] -= E1 @ U[i1:i2, i2:]
    return Q.T


def vm(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def timed(fn, repeats=3):
    walls, cpus = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


def main():
    blocks = make_blocks(jax.random.key(0))
    keys = jax.random.split(jax.random.key(1), SEQS // BATCH)
    xs = [jax.random.normal(k, (BATCH, T, D)) for k in keys]
    jax.block_until_ready(xs)

    def full():
        r = calib.quantize_blocks(blocks, xs, "gptq", bits=BITS, group_size=GS, sym=False)
        jax.block_until_ready([b.params for b in r.blocks])
        return r

    t0, c0 = time.perf_counter(), time.process_time()
    res = full()
    first_wall, first_cpu = time.perf_counter() - t0, time.process_time() - c0
    log(f"first pass (with compilation): {first_wall:.2f}s wall, {first_cpu:.2f}s cpu")

    # memory of a warm pass
    model_bytes = sum(a.size * 4 for b in blocks for a in jax.tree.leaves(b.params))
    act_bytes = SEQS * T * D * 4
    base = vm("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    full()
    extra = vm("VmHWM") - base
    ratio = extra / (model_bytes + act_bytes)
    log(f"peak extra RSS {extra / 2**20:.1f} MiB; model {model_bytes / 2**20:.1f} MiB, "
        f"one block's calibration activations {act_bytes / 2**20:.1f} MiB")

    wall, cpu = timed(full)
    emit("gptq_seconds", round(wall, 3), "s", None, ok=True, cpu_s=round(cpu, 3),
         first_pass_s=round(first_wall, 3), layers=N_BLOCKS * len(LINEARS))

    # the algorithm alone on the same Hessians (inputs of the quantized model's blocks)
    ws, hs = layer_hessians(blocks, xs, [b.params for b in res.blocks])

    def ours():
        jax.block_until_ready([calib.gptq(w, h, bits=BITS, group_size=GS, sym=False)[0]
                               for w, h in zip(ws, hs, strict=True)])

    hs_np, ws_np = [np.asarray(h) for h in hs], [np.asarray(w) for w in ws]

    def ref():
        for w, h in zip(ws_np, hs_np, strict=True):
            np_gptq(w, h, BITS, GS)

    ours()
    w_ours, c_ours = timed(ours)
    w_ref, c_ref = timed(ref)
    diff = max(float(np.max(np.abs(np.asarray(calib.gptq(w, h, bits=BITS, group_size=GS,
                                                               sym=False)[0])
                                   - np_gptq(np.asarray(w), np.asarray(h), BITS, GS))))
               for w, h in zip(ws[:2], hs[:2], strict=True))
    emit("gptq_layers_seconds", round(w_ours, 3), "s", None, ok=True, cpu_s=round(c_ours, 3))
    emit("numpy_ref_seconds", round(w_ref, 3), "s", None, ok=True, cpu_s=round(c_ref, 3),
         max_abs_diff_first_layers=diff)
    emit("gptq_speedup", round(w_ref / w_ours, 2), "ratio", None, ok=True)
    emit("gptq_peak_memory_ratio", round(ratio, 3), "ratio", None, ok=True,
         peak_extra_mib=round(extra / 2**20, 1),
         model_plus_block_acts_mib=round((model_bytes + act_bytes) / 2**20, 1))


if __name__ == "__main__":
    main()
