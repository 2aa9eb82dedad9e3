"""GPTQ (Frantar et al. 2022) for one linear layer, jitted per layer shape.

The layer is ``y = x @ w`` with ``w`` of shape ``(in, out)``; ``h = 2 X^T X / n``
is the Hessian of the layer's squared output error with respect to each
output channel's weights (see :mod:`jaxcomp.quant.calib.stats`). GPTQ quantizes
the input rows one at a time and spreads each row's rounding error over the
not-yet-quantized rows through the inverse Hessian, exactly as the paper's
Algorithm 1:

1. dead inputs (``H[j, j] == 0``) get ``H[j, j] = 1`` and zero weights;
2. with ``act_order``, rows are permuted by descending ``diag(H)``;
3. ``damp * mean(diag(H))`` is added to the diagonal;
4. ``U`` = upper Cholesky factor of ``H^-1``;
5. rows are processed in blocks of ``block_size``: inside a block the error
   of row ``j`` updates the block's rows ``> j`` at once; the rows after the
   block get the block's errors in one matrix product (lazy batch update);
6. group-wise scales (``group_size`` consecutive input rows, per output
   channel) are computed from the *current*, error-updated weights when a
   group starts.

Design choices:

* The block size is made compatible with the groups (``block_size`` rounded
  down to a multiple of ``group_size``, or to a divisor of it when groups are
  larger than blocks) so a group's scale always sees every earlier row's
  error: the result then equals the plain row-by-row algorithm.
* ``act_order=True`` uses **static groups** (the reference implementation's
  ``static_groups`` option): group scales are computed from the original,
  unpermuted weights on contiguous input groups before any update, so the
  result keeps the standard contiguous ``(n_groups, out)`` layout and needs no
  group index; the quantization order follows ``diag(H)``.
* Quantizer conventions are :mod:`jaxcomp.quant.uniform`'s: symmetric codes in
  ``[-(2^(b-1)-1), 2^(b-1)-1]`` with zero point 0, asymmetric in
  ``[-2^(b-1), 2^(b-1)-1]`` with an integer zero point; ``w ≈ (q - z) * s``.

Example:
    >>> import jax, jax.numpy as jnp
    >>> x = jax.random.normal(jax.random.key(0), (256, 64))
    >>> w = jax.random.normal(jax.random.key(1), (64, 32))
    >>> wq, q, s, z = gptq(w, hessian_of(x), bits=4, group_size=32, sym=True)
    >>> wq.shape, q.dtype, s.shape
    ((64, 32), dtype('int8'), (2, 32))
    >>> rtn_err = jnp.linalg.norm(x @ (w - rtn(w, bits=4, group_size=32, sym=True)[0]))
    >>> bool(jnp.linalg.norm(x @ (w - wq)) < rtn_err)
    True

References:
    Frantar, Ashkboos, Hoefler, Alistarh 2022, "GPTQ: Accurate Post-Training
    Quantization for Generative Pre-trained Transformers".
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxcomp.core.errors import ConfigError, _is_tracer, check_range
from jaxcomp.quant.calib._common import (
    check_group,
    check_weight,
    check_weight_bits,
    group_params,
    quant_col,
    rtn,
    upper_chol_inv,
)
from jaxcomp.quant.calib.stats import hessian_of

__all__ = ["effective_block_size", "gptq", "hessian_of", "rtn"]


def effective_block_size(block_size: int, group_size: int | None, n_in: int) -> int:
    """The block size GPTQ runs with: ``block_size`` made group-aligned and ≤ ``n_in``.

    Example:
        >>> effective_block_size(128, 32, 512), effective_block_size(128, 192, 576)
        (128, 96)
    """
    bs = max(1, min(int(block_size), n_in))
    if group_size is None:
        return bs
    if group_size <= bs:
        return (bs // group_size) * group_size
    return max(d for d in range(1, bs + 1) if group_size % d == 0)


@functools.partial(jax.jit, static_argnames=("bits", "group_size", "sym", "block_size",
                                             "act_order"))
def _gptq_core(w, h, damp, *, bits, group_size, sym, block_size, act_order):
    f32 = jnp.float32
    wt = w.astype(f32).T                              # (out, in): rows of the paper
    h = h.astype(f32)
    n_out, n_in = wt.shape
    dead = jnp.diag(h) == 0
    h = h + jnp.diag(dead.astype(f32))
    wt = jnp.where(dead[None, :], 0.0, wt)
    gs = group_size or n_in
    ng = n_in // gs
    static_s = static_z = None
    if act_order and group_size is not None:         # static groups, original order
        static_s, static_z = group_params(wt.reshape(n_out, ng, gs), bits, sym)
    if act_order:
        perm = jnp.argsort(-jnp.diag(h), stable=True)
        wt, h = wt[:, perm], h[perm][:, perm]
    else:
        perm = jnp.arange(n_in)
    h = h + damp * jnp.mean(jnp.diag(h)) * jnp.eye(n_in, dtype=f32)
    u = upper_chol_inv(h)
    ok = jnp.all(jnp.isfinite(u))

    bs = effective_block_size(block_size, group_size, n_in)
    nb = -(-n_in // bs)
    n_pad = nb * bs
    pad = n_pad - n_in
    wt = jnp.pad(wt, ((0, 0), (0, pad)))
    u = jnp.pad(u, ((0, pad), (0, pad))) + jnp.diag(
        jnp.concatenate([jnp.zeros(n_in, f32), jnp.ones(pad, f32)]))
    # group of each (permuted, padded) position, in the original contiguous layout
    gidx = jnp.concatenate([perm // gs, jnp.zeros(pad, perm.dtype)])
    per_row_once = group_size is None
    s0, z0 = group_params(wt[:, :n_in], bits, sym) if per_row_once else (
        jnp.ones(n_out, f32), jnp.zeros(n_out, f32))
    dyn_in_block = group_size is not None and not act_order and gs <= bs
    dyn_at_block = group_size is not None and not act_order and gs > bs

    def inner(i, c):
        w1, q1, c1, e1, u1, s, z, sg, zg, i1 = c
        j = i1 + i
        if act_order and group_size is not None:
            s, z = static_s[:, gidx[j]], static_z[:, gidx[j]]
        elif dyn_in_block:
            s, z = jax.lax.cond(
                i % gs == 0,
                lambda: group_params(jax.lax.dynamic_slice_in_dim(w1, i, gs, 1), bits, sym),
                lambda: (s, z))
        col = w1[:, i]
        q, dq = quant_col(col, s, z, bits, sym)
        err = (col - dq) / u1[i, i]
        w1 = w1 - err[:, None] * u1[i][None, :]
        g = jnp.minimum(gidx[j], ng - 1)
        return (w1, q1.at[:, i].set(dq), c1.at[:, i].set(q), e1.at[:, i].set(err), u1,
                s, z, sg.at[:, g].set(s), zg.at[:, g].set(z), i1)

    def outer(b, c):
        wt, qd, qc, s, z, sg, zg = c
        i1 = b * bs
        w1 = jax.lax.dynamic_slice_in_dim(wt, i1, bs, 1)
        urows = jax.lax.dynamic_slice_in_dim(u, i1, bs, 0)          # (bs, n_pad)
        u1 = jax.lax.dynamic_slice_in_dim(urows, i1, bs, 1)
        if dyn_at_block:
            s, z = jax.lax.cond(
                i1 % gs == 0,
                lambda: group_params(jax.lax.dynamic_slice_in_dim(wt, i1, gs, 1), bits, sym),
                lambda: (s, z))
        zeros = jnp.zeros((n_out, bs), f32)
        w1, q1, c1, e1, _, s, z, sg, zg, _ = jax.lax.fori_loop(
            0, bs, inner, (w1, zeros, zeros, zeros, u1, s, z, sg, zg, i1))
        # lazy batch update of every later row (earlier rows have U == 0 there)
        wt = wt - jnp.dot(e1, urows, precision=jax.lax.Precision.HIGHEST)
        qd = jax.lax.dynamic_update_slice_in_dim(qd, q1, i1, 1)
        qc = jax.lax.dynamic_update_slice_in_dim(qc, c1, i1, 1)
        return wt, qd, qc, s, z, sg, zg

    init = (wt, jnp.zeros_like(wt), jnp.zeros_like(wt), s0, z0,
            jnp.zeros((n_out, ng), f32), jnp.zeros((n_out, ng), f32))
    _, qd, qc, _, _, sg, zg = jax.lax.fori_loop(0, nb, outer, init)
    inv = jnp.argsort(perm)
    qd, qc = qd[:, :n_in][:, inv], qc[:, :n_in][:, inv]
    if act_order and group_size is not None:
        sg, zg = static_s, static_z
    elif per_row_once:
        sg, zg = s0[:, None], z0[:, None]
    return qd.T, qc.T.astype(jnp.int8), sg.T, zg.T, ok


def gptq(w: jax.Array, h: jax.Array, *, bits: int, group_size: int | None, sym: bool,
         damp: float = 0.01, block_size: int = 128, act_order: bool = False,
         path: str = "<layer>") -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Quantize one ``(in, out)`` kernel with GPTQ.

    Args:
      w: the float kernel ``(in, out)``.
      h: the input Hessian ``2 X^T X / n`` ``(in, in)`` (float32 recommended).
      bits: 2..8; group_size: consecutive input rows sharing a scale (must
        divide ``in``), or ``None`` for one scale per output channel;
      sym: symmetric (zero point 0) or asymmetric codes.
      damp: fraction of ``mean(diag(H))`` added to the diagonal.
      block_size: rows per lazy batch update (made group-aligned).
      act_order: quantize rows by descending ``diag(H)`` (static groups).
      path: the layer's name, used in error messages.

    Returns:
      ``(w_q, codes, scales, zeros)``: dequantized kernel ``(in, out)`` float32,
      int8 codes ``(in, out)``, scales and zero points ``(n_groups, out)``.

    Raises:
      ConfigError: bad shapes / bits / group size, or a Hessian that is not
        positive definite after damping (checked when called outside ``jit``).
    """
    check_weight(w, path)
    n_in = w.shape[0]
    if getattr(h, "shape", None) != (n_in, n_in):
        raise ConfigError(f"{path}: h: expected the ({n_in}, {n_in}) input Hessian of a "
                          f"kernel of shape {tuple(w.shape)}, got {getattr(h, 'shape', h)}")
    bits = check_weight_bits(bits, path)
    group_size = check_group(group_size, n_in, path)
    check_range(f"{path}: damp", damp, 0.0, None)
    if not isinstance(block_size, int | np.integer) or block_size < 1:
        raise ConfigError(f"{path}: block_size: got {block_size!r}; allowed: an int >= 1")
    wq, q, s, z, ok = _gptq_core(w, h, jnp.float32(damp), bits=bits, group_size=group_size,
                                 sym=bool(sym), block_size=int(block_size),
                                 act_order=bool(act_order))
    if not _is_tracer(ok) and not bool(ok):
        raise ConfigError(
            f"{path}: the damped Hessian is singular or ill-conditioned (its Cholesky "
            f"factorization gave NaN, damp={damp}); use more calibration samples "
            f"(at least as many tokens as the {n_in} inputs) or a larger damp (e.g. 0.1)")
    return wq, q, s, z
