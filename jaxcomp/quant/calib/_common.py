"""Shared pieces of the calibration methods: argument checks and the
group-wise (per output channel, groups along the input dimension) weight
quantizer that GPTQ, AWQ and round-to-nearest all use.

Weights are ``(in, out)`` as Flax ``Dense`` / ``nnx.Linear`` store kernels;
a group is ``group_size`` consecutive *input* rows, and scales / zero points
have shape ``(n_groups, out)`` (``n_groups = 1`` without grouping), the
layout :func:`jaxcomp.quant.uniform.quantize` gives for
``axis=1, group_size=g, group_axis=0``.

Example:
    >>> import jax.numpy as jnp
    >>> w = jnp.arange(8.0).reshape(4, 2) - 3.0
    >>> dq, q, s, z = rtn(w, bits=4, group_size=2, sym=True)
    >>> q.shape, s.shape
    ((4, 2), (2, 2))
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcomp.core.errors import ConfigError
from jaxcomp.quant.uniform import check_bits, qparams, qrange

WEIGHT_BITS = (2, 3, 4, 5, 6, 7, 8)


def check_weight_bits(bits: Any, path: str) -> int:
    """``bits`` as an int in 2..8 (codes are stored as int8)."""
    check_bits(bits, f"{path}: bits")
    if not isinstance(bits, int | np.integer) or int(bits) not in WEIGHT_BITS:
        raise ConfigError(f"{path}: bits: got {bits!r}; allowed: {WEIGHT_BITS} (a Python int)")
    return int(bits)


def check_group(group_size: int | None, n_in: int, path: str) -> int | None:
    """``group_size`` unless it does not divide the input dimension ``n_in``."""
    if group_size is None or group_size in (0, -1):
        return None
    divs = [d for d in range(1, n_in + 1) if n_in % d == 0]
    if not isinstance(group_size, int | np.integer) or group_size < 1 or n_in % group_size:
        raise ConfigError(f"{path}: group_size: got {group_size!r}; it must divide the input "
                          f"dimension {n_in}: allowed {divs} or None (one group)")
    return int(group_size)


def check_weight(w: Any, path: str, what: str = "w") -> None:
    """A rank-2 ``(in, out)`` kernel."""
    if getattr(w, "ndim", None) != 2:
        raise ConfigError(f"{path}: {what}: expected a rank-2 (in, out) kernel, got shape "
                          f"{getattr(w, 'shape', type(w).__name__)}")


def group_params(wcols: jax.Array, bits: int, sym: bool) -> tuple[jax.Array, jax.Array]:
    """Scale and zero point per row of ``wcols`` (``(rows, k)``), each ``(rows,)``."""
    lo = jnp.min(wcols, axis=-1)
    hi = jnp.max(wcols, axis=-1)
    return qparams(lo, hi, bits, symmetric=sym)


def quant_col(v: jax.Array, scale: jax.Array, zp: jax.Array, bits: int,
              sym: bool) -> tuple[jax.Array, jax.Array]:
    """Codes and dequantized values of ``v`` for given scale / zero point."""
    qmin, qmax = qrange(bits, symmetric=sym)
    q = jnp.clip(jnp.round(v / scale + zp), qmin, qmax)
    return q, (q - zp) * scale


def rtn(w: jax.Array, *, bits: int, group_size: int | None, sym: bool
        ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Round-to-nearest group-wise quantization of an ``(in, out)`` kernel.

    Returns ``(dequantized, codes int8, scales, zeros)`` with scales / zeros of
    shape ``(n_groups, out)``.
    """
    n_in, n_out = w.shape
    gs = group_size or n_in
    wg = w.astype(jnp.float32).T.reshape(n_out, n_in // gs, gs)
    s, z = group_params(wg, bits, sym)                       # (out, ng)
    q, dq = quant_col(wg, s[..., None], z[..., None], bits, sym)
    return (dq.reshape(n_out, n_in).T, q.reshape(n_out, n_in).T.astype(jnp.int8),
            s.T, z.T)


def upper_chol_inv(h: jax.Array) -> jax.Array:
    """Upper-triangular ``U`` with ``U^T U = H^-1`` (``H`` symmetric positive definite).

    With ``J`` the row/column flip and ``J H J = L L^T`` (Cholesky), ``U = J L^-1 J``:
    one Cholesky factorization and one triangular inverse, without forming ``H^-1``
    (NaN when ``H`` is not positive definite).

    Example:
        >>> h = jnp.array([[4.0, 2.0], [2.0, 3.0]])
        >>> u = upper_chol_inv(h)
        >>> bool(u[1, 0] == 0), bool(jnp.allclose(u.T @ u, jnp.linalg.inv(h)))
        (True, True)
    """
    lo = jnp.linalg.cholesky(h[::-1, ::-1])
    inv = jax.scipy.linalg.solve_triangular(lo, jnp.eye(h.shape[0], dtype=h.dtype), lower=True)
    return inv[::-1, ::-1]


def dequant(codes: jax.Array, scales: jax.Array, zeros: jax.Array) -> jax.Array:
    """``(codes - zeros) * scales`` with ``(n_groups, out)`` params on ``(in, out)`` codes."""
    rep = codes.shape[0] // scales.shape[0]
    return ((codes.astype(jnp.float32) - jnp.repeat(zeros, rep, 0))
            * jnp.repeat(scales, rep, 0))
