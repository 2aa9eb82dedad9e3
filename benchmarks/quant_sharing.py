"""Weight-sharing benchmarks: Deep Compression storage ratio and k-means speed.

* ``deep_compression_ratio`` — LeNet-300-100 trained 3 epochs on Fashion-MNIST,
  pruned one-shot to Han's keep ratios (8% / 9% / 26%, ~92% overall), 6-bit
  k-means sharing of every kernel, CSR with 5-bit relative indices: fp32 dense
  bytes over the encoded bytes (fixed width). Target >= 25x.
* ``deep_compression_ratio_huffman`` — the same with Huffman-coded streams. Target >= 30x.
* ``mixed_precision_vs_uniform_3bit_pt`` — per-layer sensitivity at 2/3/4/6/8
  bits, knapsack allocation at the byte budget of uniform 3-bit: measured
  accuracy difference vs uniform 3-bit (pt; target >= 0). The Pareto front is
  written to ``$JAXCOMP_BENCH_OUT`` (default: a temporary directory).
* ``kmeans_time`` — jitted 6-bit (64-cluster) k-means of a 235,200-weight
  layer (784x300, 92% zeros), 20 Lloyd iterations, median of 7 interleaved
  runs, beside a naive ``O(n k)`` argmin-assignment variant. Target null.

Run: ``python benchmarks/quant_sharing.py``.
"""

from __future__ import annotations

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from harness import emit, interleaved, log  # noqa: E402

from jaxcomp.data import fashion_mnist  # noqa: E402
from jaxcomp.models import get_model  # noqa: E402
from jaxcomp.prune import magnitude, prune_once  # noqa: E402
from jaxcomp.quant import deep_compression as dc  # noqa: E402
from jaxcomp.quant import kmeans as km  # noqa: E402
from jaxcomp.quant import mixed_precision as mp  # noqa: E402
from jaxcomp.quant.sharing import weight_sharing  # noqa: E402
from jaxcomp.train import eval_step_fn, evaluate, fit  # noqa: E402

HAN_SPARSITY = {"Dense_0/kernel": 0.92, "Dense_1/kernel": 0.91, "Dense_2/kernel": 0.74}


def trained_lenet300():
    ds = fashion_mnist()
    model = get_model("lenet300", input_shape=ds.input_shape)
    res = fit(model, ds, optax.adam(1e-3), epochs=3, batch_size=128, seed=0, progress=False)
    return ds, model, res.state.params, res.state.model_state


def ratio_bench(ds, model, params, ms) -> None:
    pruned, _ = prune_once(magnitude(HAN_SPARSITY), params)
    state = weight_sharing(bits=6, init="linear", iters=30).init(pruned)
    dense = dc.dense_fp32_bytes(pruned)
    fixed = dc.compress(pruned, state, rel_bits=5, use_huffman=False)
    huff = dc.compress(pruned, state, rel_bits=5, use_huffman=True)
    decoded = dc.decompress(huff, pruned)
    acc = {name: evaluate(model, p, ms, ds.x_test, ds.y_test)["accuracy"]
           for name, p in (("dense", params), ("pruned", pruned), ("decoded", decoded))}
    log(f"accuracy (no retraining): {acc}; per-layer bytes: {huff.report()}")
    kept = float(sum(np.count_nonzero(np.asarray(x)) for x in jax.tree.leaves(pruned))
                 / sum(np.size(x) for x in jax.tree.leaves(pruned)))
    for name, comp, target in (("deep_compression_ratio", fixed, 25.0),
                               ("deep_compression_ratio_huffman", huff, 30.0)):
        r = dense / comp.nbytes
        emit(name, round(r, 2), "x", target, ok=r >= target, dense_bytes=dense,
             encoded_bytes=comp.nbytes, weights_kept=round(kept, 4), bits=6, rel_bits=5,
             decoded_accuracy=round(acc["decoded"], 4), pruned_accuracy=round(acc["pruned"], 4))


def _naive_kmeans(x, mask, k, iters):
    """The O(n k) variant: argmin over all centroids, for comparison."""
    c0 = km.linear_init(x, mask, k)
    w = mask.astype(x.dtype)

    def step(_, c):
        idx = km.assign(x, c)
        s = jax.ops.segment_sum(x * w, idx, num_segments=k)
        n = jax.ops.segment_sum(w, idx, num_segments=k)
        return jnp.where(n > 0, s / jnp.maximum(n, 1), c)

    c = jax.lax.fori_loop(0, iters, step, c0)
    return c, jnp.where(mask, km.assign(x, c), -1)


def kmeans_bench() -> None:
    w = jax.random.normal(jax.random.key(0), (784, 300)) * 0.05
    w = jnp.where(jnp.abs(w) > 0.05 * 1.75, w, 0.0)  # ~92% zeros
    x, mask = w.ravel(), w.ravel() != 0
    fast = jax.jit(lambda x, m: km.kmeans1d(x, m, k=64, init="linear", iters=20))
    naive = jax.jit(lambda x, m: _naive_kmeans(x, m, 64, 20))
    cf, _ = jax.block_until_ready(fast(x, mask))
    cn, _ = jax.block_until_ready(naive(x, mask))
    same = bool(np.allclose(np.asarray(cf), np.asarray(cn), atol=1e-5))
    t = interleaved({"fast": lambda: jax.block_until_ready(fast(x, mask)),
                     "naive": lambda: jax.block_until_ready(naive(x, mask))}, repeats=7)
    emit("kmeans_time", round(t["fast"]["wall"], 5), "s", None, ok=True,
         cpu_s=round(t["fast"]["cpu"], 5), weights=int(x.size), nonzeros=int(mask.sum()),
         clusters=64, iters=20, naive_argmin_s=round(t["naive"]["wall"], 5),
         naive_cpu_s=round(t["naive"]["cpu"], 5),
         speedup_vs_naive=round(t["naive"]["wall"] / t["fast"]["wall"], 2),
         same_centroids_as_naive=same)


def mixed_precision_bench(ds, model, params, ms) -> None:
    """Sensitivity-driven knapsack allocation vs uniform 3-bit at the same byte budget."""
    eval_fn = jax.jit(eval_step_fn(model))

    def acc(p):
        return evaluate(model, p, ms, ds.x_test, ds.y_test, step_fn=eval_fn)["accuracy"]

    cands = [2, 3, 4, 6, 8]
    base, drops = mp.sensitivity(params, acc, cands)
    sizes = mp.size_table(params, list(drops), cands)
    uniform = {p: 3 for p in drops}
    budget = int(mp.total(sizes, uniform))
    alloc = {name: fn(drops, sizes, budget) for name, fn in mp.ALLOCATORS.items()}
    measured = {name: acc(mp.quantize_layers(params, a)) for name, a in alloc.items()}
    acc_uniform = acc(mp.quantize_layers(params, uniform))
    front = mp.pareto_front(drops, sizes, n_points=10,
                            measure=lambda b: base - acc(mp.quantize_layers(params, b)))
    out = os.environ.get("JAXCOMP_BENCH_OUT") or tempfile.mkdtemp(prefix="jaxcomp_mp_")
    files = mp.write_pareto(front, out, "lenet300_mixed_precision")
    log(f"float acc {base:.4f}; allocations {alloc}; Pareto files {files}")
    diff = 100 * (measured["knapsack"] - acc_uniform)
    emit("mixed_precision_vs_uniform_3bit_pt", round(diff, 3), "pt", 0.0, ok=diff >= 0,
         budget_bytes=budget, knapsack_bits=alloc["knapsack"], greedy_bits=alloc["greedy"],
         knapsack_acc=round(measured["knapsack"], 4), greedy_acc=round(measured["greedy"], 4),
         uniform_3bit_acc=round(acc_uniform, 4), float_acc=round(base, 4),
         pareto_points=len(front), pareto_csv=str(files["csv"]))


def main() -> None:
    trained = trained_lenet300()
    ratio_bench(*trained)
    mixed_precision_bench(*trained)
    kmeans_bench()


if __name__ == "__main__":
    main()
