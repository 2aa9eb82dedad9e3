"""Truncated and randomized SVD of Dense kernels, and their two-factor form.

A kernel ``W`` of shape ``(m, n)`` at rank ``r`` becomes ``U diag(s) Vt`` with
``U: (m, r)``, ``s: (r,)``, ``Vt: (r, n)``; a low-rank Dense layer uses
``A = U sqrt(s)`` and ``B = sqrt(s) Vt`` (``x @ A @ B``). All functions are
jittable with a static ``rank``.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp.decompose.svd import truncated_svd, svd_reconstruct
    >>> w = jax.random.normal(jax.random.key(0), (6, 2)) @ jax.random.normal(
    ...     jax.random.key(1), (2, 5))
    >>> f = truncated_svd(w, 2)
    >>> bool(jnp.allclose(svd_reconstruct(f), w, atol=1e-4))
    True

References:
    Denton et al., "Exploiting Linear Structure Within Convolutional Networks for
    Efficient Evaluation", NeurIPS 2014. Halko, Martinsson, Tropp, "Finding structure
    with randomness", SIAM Review 2011.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxcomp.core.errors import check_number
from jaxcomp.decompose._checks import _check_key, check_finite, check_iters, check_ndim, check_rank


class SVD(NamedTuple):
    """``u: (m, r)``, ``s: (r,)``, ``vt: (r, n)``."""

    u: jax.Array
    s: jax.Array
    vt: jax.Array


def _check(w, rank, what):
    check_ndim(what, w.shape, 2, "SVD")
    check_finite(what, w)
    return check_rank(what, rank, min(w.shape))


def truncated_svd(w: jax.Array, rank: int, *, what: str = "kernel") -> SVD:
    """The best rank-``rank`` approximation of ``w`` (Eckart-Young), as :class:`SVD`."""
    rank = _check(w, rank, what)
    u, s, vt = jnp.linalg.svd(jnp.asarray(w, jnp.float32), full_matrices=False)
    return SVD(u[:, :rank], s[:rank], vt[:rank])


def randomized_svd(w: jax.Array, rank: int, *, key: jax.Array, oversample: int = 10,
                   power_iters: int = 2, what: str = "kernel") -> SVD:
    """Randomized SVD (range finder with ``power_iters`` power iterations).

    Cheaper than :func:`truncated_svd` for large matrices and small ranks; the
    random test matrix comes from ``key``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> w = jax.random.normal(jax.random.key(0), (50, 3)) @ jax.random.normal(
        ...     jax.random.key(1), (3, 40))
        >>> f = randomized_svd(w, 3, key=jax.random.key(2))
        >>> bool(jnp.allclose(svd_reconstruct(f), w, atol=1e-3))
        True
    """
    rank = _check(w, rank, what)
    check_iters(what, power_iters, "power_iters")
    check_number(f"{what}: oversample", oversample, 0, None, integer=True)
    _check_key(f"{what}: key", key)
    w = jnp.asarray(w, jnp.float32)
    m, n = w.shape
    sketch = min(rank + max(int(oversample), 0), m, n)
    omega = jax.random.normal(key, (n, sketch), w.dtype)
    q, _ = jnp.linalg.qr(w @ omega)
    for _ in range(power_iters):
        z, _ = jnp.linalg.qr(w.T @ q)
        q, _ = jnp.linalg.qr(w @ z)
    ub, s, vt = jnp.linalg.svd(q.T @ w, full_matrices=False)
    return SVD((q @ ub)[:, :rank], s[:rank], vt[:rank])


def svd_reconstruct(f: SVD) -> jax.Array:
    """``U diag(s) Vt``."""
    return (f.u * f.s) @ f.vt


def lowrank_factors(f: SVD) -> tuple[jax.Array, jax.Array]:
    """``(A, B)`` with ``A = U sqrt(s)`` (m, r) and ``B = sqrt(s) Vt`` (r, n); ``A @ B = W_r``.

    Example:
        >>> import jax.numpy as jnp
        >>> a, b = lowrank_factors(truncated_svd(jnp.diag(jnp.array([4.0, 1.0])), 1))
        >>> [float(v) for v in (a @ b).ravel()]
        [4.0, 0.0, 0.0, 0.0]
    """
    r = jnp.sqrt(f.s)
    return f.u * r, r[:, None] * f.vt


def svd_params(shape: tuple[int, int], rank: int) -> int:
    """Weights of the two-factor form: ``rank * (m + n)``."""
    return int(rank * (shape[0] + shape[1]))
