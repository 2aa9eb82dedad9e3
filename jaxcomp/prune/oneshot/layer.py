"""One-shot pruning of one linear layer: magnitude, Wanda and SparseGPT.

Kernels are ``(in, out)`` as Flax stores them (``y = x @ w``). The papers
write ``W`` as ``(out, in)`` and compare weights *per output row*; here that
is **per output column** of the kernel: each output's ``in`` weights compete
among themselves, and an N:M group is ``M`` consecutive *input* rows of one
output column (the reduction dimension, which sparse tensor cores compress).

* :func:`magnitude` — ``|w|``, layer-wise (unstructured) or N:M; no data.
* :func:`wanda` — ``|w_ij| · ||X_i||_2`` (``X_i``: input feature ``i`` over the
  calibration tokens), compared per output column; no weight update.
* :func:`sparsegpt` — OBS pruning with the upper Cholesky factor ``U`` of
  ``H^-1`` (``H = 2 X^T X / n``, dampened by ``damp · mean(diag H)``): input
  rows are processed in blocks of ``block_size``; at the start of each block
  the mask is chosen *adaptively* over the whole block from the error-updated
  weights (score ``w^2 / U_jj^2``, exactly ``round(sparsity · out · cols)``
  pruned); for N:M the mask of each group of ``M`` rows is chosen when the
  group starts. Each row's pruning error is spread over the later rows of the
  block at once and over the rows after the block in one matrix product (lazy
  batch update). Jitted per layer shape; ``sparsity`` is a traced number, so
  layers of one shape at different sparsities (OWL) share one compilation.

Every function returns ``(pruned kernel, keep mask)``, both ``(in, out)``.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp.quant.calib import hessian_of
    >>> x = jax.random.normal(jax.random.key(0), (512, 64))
    >>> w = jax.random.normal(jax.random.key(1), (64, 32))
    >>> ws, keep = sparsegpt(w, hessian_of(x), sparsity=0.5)
    >>> float(1 - keep.mean()), bool(jnp.all(ws[~keep] == 0))
    (0.5, True)
    >>> wm, _ = magnitude(w, sparsity=0.5)
    >>> bool(jnp.linalg.norm(x @ (w - ws)) < jnp.linalg.norm(x @ (w - wm)))
    True
    >>> w24, k24 = wanda(w, jnp.linalg.norm(x, axis=0), nm=(2, 4))
    >>> k24.reshape(16, 4, 32).sum(1).min().item(), k24.reshape(16, 4, 32).sum(1).max().item()
    (2, 2)

References:
    Frantar & Alistarh 2023, "SparseGPT: Massive Language Models Can Be Accurately
    Pruned in One-Shot"; Sun, Liu, Bair & Kolter 2023, "A Simple and Effective
    Pruning Approach for Large Language Models" (Wanda).
"""

from __future__ import annotations

import functools
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcomp.core.errors import ConfigError, _is_tracer, check_number
from jaxcomp.prune.masks import nm_mask, topk_mask
from jaxcomp.quant.calib._common import upper_chol_inv

NM = tuple[int, int]
__all__ = ["check_pattern", "magnitude", "parse_nm", "sparsegpt", "wanda"]


def parse_nm(nm: Any, path: str = "nm") -> NM | None:
    """``"2:4"``, ``(2, 4)`` or ``None`` -> ``(n, m)`` (``n`` kept of every ``m``) or ``None``.

    Example:
        >>> parse_nm("2:4"), parse_nm((4, 8)), parse_nm(None)
        ((2, 4), (4, 8), None)
    """
    if nm is None:
        return None
    if isinstance(nm, str):
        mt = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", nm)
        if not mt:
            raise ConfigError(f"{path}: got {nm!r}; expected 'N:M' such as '2:4' or '4:8'")
        nm = (int(mt.group(1)), int(mt.group(2)))
    if not (isinstance(nm, tuple | list) and len(nm) == 2
            and all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in nm)):
        raise ConfigError(f"{path}: got {nm!r}; expected 'N:M' or a pair of ints (N, M)")
    n, m = int(nm[0]), int(nm[1])
    if not 0 < n < m:
        raise ConfigError(f"{path}: N:M = {n}:{m}; need integers with 0 < N < M (N kept of M)")
    return n, m


def check_pattern(w: Any, path: str, sparsity: Any, nm: Any) -> tuple[Any, NM | None]:
    """Check a kernel and its pattern; returns ``(sparsity, (n, m) or None)``.

    Exactly one of ``sparsity`` (unstructured, in ``[0, 1)``) and ``nm`` is given;
    ``M`` must divide the kernel's input dimension.
    """
    if getattr(w, "ndim", None) != 2:
        raise ConfigError(f"{path}: expected a rank-2 (in, out) kernel, got shape "
                          f"{getattr(w, 'shape', type(w).__name__)}")
    nm = parse_nm(nm, f"{path}: nm")
    if nm is not None:
        if sparsity is not None:
            raise ConfigError(f"{path}: got both sparsity={sparsity!r} and nm={nm[0]}:{nm[1]}; "
                              "N:M fixes the sparsity to 1 - N/M, give one of them")
        n_in = w.shape[0]
        if n_in % nm[1]:
            divs = [d for d in range(2, min(n_in, 64) + 1) if n_in % d == 0]
            raise ConfigError(f"{path}: N:M = {nm[0]}:{nm[1]}: M={nm[1]} does not divide the "
                              f"layer's input dimension {n_in} (kernel {tuple(w.shape)}); "
                              f"allowed M: divisors of {n_in} such as {divs}")
        return None, nm
    if sparsity is None:
        raise ConfigError(f"{path}: give sparsity (unstructured, in [0, 1)) or nm ('2:4')")
    check_number(f"{path}: sparsity", sparsity, 0.0, 1.0, hi_open=True)
    return sparsity, None


def _per_output_mask(scores: jax.Array, sparsity: Any) -> jax.Array:
    """Prune the ``round(sparsity · in)`` smallest scores of every output column (ties:
    the lower input index first, as a stable argsort) — by :func:`smallest_k` per column,
    about 20× faster than two argsorts on XLA:CPU (4 ms vs 89 ms for 256×1024)."""
    n_in = scores.shape[0]
    k = jnp.round(jnp.asarray(sparsity, jnp.float32) * n_in).astype(jnp.int32)
    return ~jax.vmap(smallest_k, in_axes=(1, None), out_axes=1)(scores, k)


def magnitude(w: jax.Array, *, sparsity: Any = None, nm: Any = None,
              path: str = "<layer>") -> tuple[jax.Array, jax.Array]:
    """Magnitude pruning: the smallest ``|w|`` of the whole kernel (or of each N:M group)."""
    sparsity, nm = check_pattern(w, path, sparsity, nm)
    a = jnp.abs(w.astype(jnp.float32))
    keep = nm_mask(a, *nm, axis=0, path=path) if nm else topk_mask(a, sparsity)
    return jnp.where(keep, w, jnp.zeros_like(w)), keep


def wanda(w: jax.Array, xnorm: jax.Array, *, sparsity: Any = None, nm: Any = None,
          path: str = "<layer>") -> tuple[jax.Array, jax.Array]:
    """Wanda: score ``|w_ij| · xnorm_i``, pruned per output column (or per N:M group).

    Args:
      w: the kernel ``(in, out)``.
      xnorm: ``(in,)`` the L2 norm of each input feature over the calibration
        tokens (``sqrt(diag(X^T X))``).
      sparsity / nm: the pattern (one of the two).
    """
    sparsity, nm = check_pattern(w, path, sparsity, nm)
    if getattr(xnorm, "shape", None) != (w.shape[0],):
        raise ConfigError(f"{path}: xnorm: expected shape ({w.shape[0]},) (one norm per input "
                          f"of the {tuple(w.shape)} kernel), got {getattr(xnorm, 'shape', xnorm)}")
    n, m = nm if nm else (0, 0)
    return _wanda_core(w, xnorm, jnp.float32(0.0 if sparsity is None else sparsity), n=n, m=m)


@functools.partial(jax.jit, static_argnames=("n", "m"))
def _wanda_core(w, xnorm, sparsity, *, n, m):
    s = jnp.abs(w.astype(jnp.float32)) * xnorm.astype(jnp.float32)[:, None]
    keep = nm_mask(s, n, m, axis=0) if m else _per_output_mask(s, sparsity)
    return jnp.where(keep, w, jnp.zeros_like(w)), keep


def block_width(block_size: int, n_in: int, m: int | None) -> int:
    """Rows per lazy block: ``block_size`` capped at ``n_in`` and a multiple of ``M``."""
    bs = max(1, min(int(block_size), n_in))
    return max(m, bs // m * m) if m else bs


def smallest_k(scores: jax.Array, k: jax.Array) -> jax.Array:
    """Mask of the ``k`` smallest of the non-negative ``scores`` (``+inf`` allowed; ties:
    the first in row-major order, as a stable argsort would take them).

    The ``k``-th smallest value is found by bisection on the float32 bit patterns (which
    order non-negative floats as integers): 31 counting passes instead of a sort.

    Example:
        >>> smallest_k(jnp.array([[3.0, 1.0], [1.0, 2.0]]), jnp.int32(2)).tolist()
        [[False, True], [True, False]]
        >>> smallest_k(jnp.array([[1.0, 1.0], [1.0, 0.5]]), jnp.int32(2)).tolist()
        [[True, False], [False, True]]
    """
    flat = jax.lax.bitcast_convert_type(scores.astype(jnp.float32).reshape(-1), jnp.int32)

    def halve(_, lohi):
        lo, hi = lohi
        mid = lo + (hi - lo) // 2
        enough = jnp.sum(flat <= mid) >= k
        return jnp.where(enough, lo, mid + 1), jnp.where(enough, mid, hi)

    inf_bits = jnp.int32(0x7F800000)
    thr, _ = jax.lax.fori_loop(0, 31, halve, (jnp.int32(0), inf_bits))
    below, tie = flat < thr, flat == thr
    need = k - jnp.sum(below)
    take = jax.lax.cond(jnp.sum(tie) <= need, lambda: below | tie,
                        lambda: below | (tie & (jnp.cumsum(tie) <= need)))
    return (take & (k > 0)).reshape(scores.shape)


@functools.partial(jax.jit, static_argnames=("n", "m", "block_size"))
def _sparsegpt_core(w, h, sparsity, damp, *, n, m, block_size):
    f32 = jnp.float32
    hi = jax.lax.Precision.HIGHEST
    wt = w.astype(f32).T                                  # (out, in): the paper's rows
    h = h.astype(f32)
    n_out, n_in = wt.shape
    dead = jnp.diag(h) == 0
    h = h + jnp.diag(dead.astype(f32))
    wt = jnp.where(dead[None, :], 0.0, wt)
    h = h + damp * jnp.mean(jnp.diag(h)) * jnp.eye(n_in, dtype=f32)
    u = upper_chol_inv(h)
    ok = jnp.all(jnp.isfinite(u))
    bs = block_width(block_size, n_in, m)
    nb = -(-n_in // bs)
    pad = nb * bs - n_in
    wt = jnp.pad(wt, ((0, 0), (0, pad)))
    u = jnp.pad(u, ((0, pad), (0, pad))) + jnp.diag(
        jnp.concatenate([jnp.zeros(n_in, f32), jnp.ones(pad, f32)]))
    col = jnp.arange(bs)

    def row(i, c, u1):
        w1, prune1, e1 = c
        wc = w1[:, i]
        q = jnp.where(prune1[:, i], 0.0, wc)
        err = (wc - q) / u1[i, i]
        w1 = (w1 - err[:, None] * u1[i][None, :]).at[:, i].set(q)
        return w1, prune1, e1.at[:, i].set(err)

    def nm_group(u1):                      # choose a group's N:M mask, then its M rows
        def body(g, c):
            w1, prune1, e1 = c
            i = g * m
            grp = jax.lax.dynamic_slice_in_dim(w1, i, m, 1)
            d = jax.lax.dynamic_slice_in_dim(jnp.diag(u1), i, m)
            keep = nm_mask(grp * grp / (d * d)[None, :], n, m, axis=1)
            c = (w1, jax.lax.dynamic_update_slice_in_dim(prune1, ~keep, i, 1), e1)
            for r in range(m):
                c = row(i + r, c, u1)
            return c
        return body

    def outer(b, c):
        wt, pr = c
        i1 = b * bs
        w1 = jax.lax.dynamic_slice_in_dim(wt, i1, bs, 1)
        urows = jax.lax.dynamic_slice_in_dim(u, i1, bs, 0)          # (bs, n_pad)
        u1 = jax.lax.dynamic_slice_in_dim(urows, i1, bs, 1)
        e1 = jnp.zeros((n_out, bs), f32)
        if m:
            prune1 = jnp.zeros((n_out, bs), bool)
            w1, prune1, e1 = jax.lax.fori_loop(0, bs // m, nm_group(u1), (w1, prune1, e1))
        else:                                    # adaptive mask over the whole block
            d = jnp.diag(u1)
            real = (i1 + col) < n_in
            sc = jnp.where(real[None, :], w1 * w1 / (d * d)[None, :], jnp.inf)
            k = jnp.round(sparsity * n_out * jnp.sum(real)).astype(jnp.int32)
            prune1 = smallest_k(sc, k)
            w1, prune1, e1 = jax.lax.fori_loop(0, bs, lambda i, c: row(i, c, u1),
                                               (w1, prune1, e1))
        wt = wt - jnp.dot(e1, urows, precision=hi)  # lazy update of every later row
        wt = jax.lax.dynamic_update_slice_in_dim(wt, w1, i1, 1)
        pr = jax.lax.dynamic_update_slice_in_dim(pr, prune1, i1, 1)
        return wt, pr

    wt, pr = jax.lax.fori_loop(0, nb, outer, (wt, jnp.zeros(wt.shape, bool)))
    keep = ~pr[:, :n_in].T
    return jnp.where(keep, wt[:, :n_in].T, 0.0), keep, ok


def sparsegpt(w: jax.Array, h: jax.Array, *, sparsity: Any = None, nm: Any = None,
              damp: float = 0.01, block_size: int = 128,
              path: str = "<layer>") -> tuple[jax.Array, jax.Array]:
    """SparseGPT for one ``(in, out)`` kernel (see the module docstring).

    Args:
      w: the kernel ``(in, out)``.
      h: the input Hessian ``2 X^T X / n`` ``(in, in)`` (float32).
      sparsity: unstructured fraction pruned, in ``[0, 1)`` (may be traced), or
      nm: ``"2:4"`` / ``(4, 8)`` (N kept of every M consecutive inputs).
      damp: fraction of ``mean(diag H)`` added to the diagonal.
      block_size: input rows per lazy block and per adaptive mask (made a
        multiple of ``M``).
      path: the layer's name in error messages.

    Returns:
      ``(pruned kernel in w's dtype, keep mask)``.

    Raises:
      ConfigError: bad pattern or shapes, or a Hessian that is singular after
        damping (checked outside ``jit``).
    """
    sparsity, nmp = check_pattern(w, path, sparsity, nm)
    n_in = w.shape[0]
    if getattr(h, "shape", None) != (n_in, n_in):
        raise ConfigError(f"{path}: h: expected the ({n_in}, {n_in}) input Hessian of a "
                          f"kernel of shape {tuple(w.shape)}, got {getattr(h, 'shape', h)}")
    check_number(f"{path}: damp", damp, 0.0, None)
    if not isinstance(block_size, int | np.integer) or isinstance(block_size, bool) \
            or block_size < 1:
        raise ConfigError(f"{path}: block_size: got {block_size!r}; allowed: an int >= 1")
    n, m = nmp if nmp else (0, 0)
    ws, keep, ok = _sparsegpt_core(w, h, jnp.float32(0.0 if sparsity is None else sparsity),
                                   jnp.float32(damp), n=n, m=m, block_size=int(block_size))
    if not _is_tracer(ok) and not bool(ok):
        raise ConfigError(
            f"{path}: the damped Hessian is singular or ill-conditioned (Cholesky gave NaN, "
            f"damp={damp}); use more calibration tokens (at least the {n_in} inputs) or a "
            "larger damp (e.g. 0.1)")
    return ws.astype(w.dtype), keep
