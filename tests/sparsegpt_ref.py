"""A plain numpy SparseGPT (float64, one input row at a time, every later row updated
at once: no lazy batching), the reference the jitted version is tested against.

Kernels are ``(in, out)``; the algorithm runs on ``W = w.T`` (``(out, in)``) as the paper
writes it.
"""

from __future__ import annotations

import numpy as np


def sparsegpt_ref(w, h, *, sparsity=None, nm=None, damp=0.01, block_size=128):
    """``(pruned kernel (in, out), keep mask)`` by the row-by-row algorithm."""
    W = np.asarray(w, np.float64).T.copy()
    H = np.asarray(h, np.float64).copy()
    n_out, n_in = W.shape
    dead = np.diag(H) == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    H += damp * np.mean(np.diag(H)) * np.eye(n_in)
    U = np.linalg.cholesky(np.linalg.inv(H)).T          # upper, U^T U = H^-1
    m = nm[1] if nm else 0
    bs = min(block_size, n_in)
    if m:
        bs = max(m, bs // m * m)
    prune = np.zeros(W.shape, bool)
    for j in range(n_in):
        if not m and j % bs == 0:                       # adaptive mask of the next block
            cols = slice(j, min(j + bs, n_in))
            sc = (W[:, cols] ** 2 / np.diag(U)[cols] ** 2).astype(np.float32).reshape(-1)
            k = int(np.round(np.float32(sparsity) * n_out * (cols.stop - j)))
            order = np.argsort(sc, kind="stable")
            p = np.zeros(sc.size, bool)
            p[order[:k]] = True
            prune[:, cols] = p.reshape(n_out, -1)
        if m and j % m == 0:
            g = (W[:, j:j + m] ** 2 / np.diag(U)[j:j + m] ** 2).astype(np.float32)
            order = np.argsort(-g, axis=1, kind="stable")
            p = np.ones(g.shape, bool)
            np.put_along_axis(p, order[:, :nm[0]], False, axis=1)
            prune[:, j:j + m] = p
        q = np.where(prune[:, j], 0.0, W[:, j])
        err = (W[:, j] - q) / U[j, j]
        W[:, j:] -= np.outer(err, U[j, j:])
        W[:, j] = q
    return W.T, ~prune.T
