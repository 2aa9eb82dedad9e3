"""Weight-sharing benchmarks: Deep Compression storage ratio and k-means speed.

* ``deep_compression_ratio`` — LeNet-300-100 trained 3 epochs on Fashion-MNIST,
  pruned one-shot to Han's keep ratios (8% / 9% / 26%, ~92% overall), 6-bit
  k-means sharing of every kernel, CSR with 5-bit relative indices: fp32 dense
  bytes over the encoded bytes (fixed width). Target >= 25x.
* ``deep_compression_ratio_huffman`` — the same with Huffman-coded streams. Target >= 30x.
* ``kmeans_time`` — jitted 6-bit (64-cluster) k-means of a 235,200-weight
  layer (784x300, 92% zeros), 20 Lloyd iterations, median of 7 interleaved
  runs, beside a naive ``O(n k)`` argmin-assignment variant. Target null.

Run: ``python benchmarks/quant_sharing.py``.
"""

from __future__ import annotations

import os
import sys

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
from jaxcomp.quant.sharing import weight_sharing  # noqa: E402
from jaxcomp.train import evaluate, fit  # noqa: E402

HAN_SPARSITY = {"Dense_0/kernel": 0.92, "Dense_1/kernel": 0.91, "Dense_2/kernel": 0.74}


def ratio_bench() -> None:
    ds = fashion_mnist()
    model = get_model("lenet300", input_shape=ds.input_shape)
    res = fit(model, ds, optax.adam(1e-3), epochs=3, batch_size=128, seed=0, progress=False)
    params, ms = res.state.params, res.state.model_state
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


def main() -> None:
    ratio_bench()
    kmeans_bench()


if __name__ == "__main__":
    main()
