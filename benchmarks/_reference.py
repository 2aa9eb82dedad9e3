"""Plain references shared by the calibration benchmarks (gptq.py, sparsity_llm.py).

* :func:`np_prep` — the numpy Hessian preparation GPTQ and SparseGPT both start from:
  dead inputs, dampening and the upper Cholesky factor of ``H^-1``;
* :func:`layer_hessians` — every block's linear kernels and input Hessians, collected
  layer by layer from captured inputs (``calib.layer_inputs``), the blocks' inputs
  coming from the previous blocks run with the given parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from jaxcomp.core import paths
from jaxcomp.quant import calib


def np_prep(w: np.ndarray, h: np.ndarray, damp: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """``(W, U)``: the kernel as ``(out, in)`` float32 rows with dead inputs zeroed, and
    the upper Cholesky factor of the dampened ``H^-1`` (float32)."""
    W = w.T.astype(np.float32).copy()
    H = h.astype(np.float32).copy()
    n = H.shape[0]
    dead = np.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H += damp * np.mean(np.diag(H)) * np.eye(n, dtype=np.float32)
    return W, np.linalg.cholesky(np.linalg.inv(H)).T


def layer_hessians(blocks: Sequence[calib.Block], xs: Sequence[jax.Array],
                   run_params: Sequence[Any] | None = None
                   ) -> tuple[list[jax.Array], list[jax.Array]]:
    """``(kernels, Hessians)`` of every listed linear, block after block; block ``i+1``'s
    inputs are block ``i`` run with ``run_params[i]`` (default: its own params)."""
    b0 = blocks[0]
    capture = jax.jit(lambda p, x: calib.layer_inputs(calib.Block(b0.apply, p, b0.linears), x))
    run = jax.jit(lambda p, x: b0.apply(p, x, calib.no_tap))
    ws, hs, cur = [], [], list(xs)
    for i, b in enumerate(blocks):
        leaves = paths.path_dict(b.params)
        st = {p: calib.stats.stats_init(leaves[p].shape[0]) for p in b.linears}
        for x in cur:
            ins = capture(b.params, x)
            st = {p: calib.stats.stats_update(st[p], ins[p]) for p in b.linears}
        hs += [calib.hessian(st[p]) for p in b.linears]
        ws += [leaves[p] for p in b.linears]
        cur = [run(b.params if run_params is None else run_params[i], x) for x in cur]
    return ws, hs
