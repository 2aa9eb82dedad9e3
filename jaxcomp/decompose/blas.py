"""One BLAS thread for small linear algebra.

On small machines, OpenBLAS with several threads makes small SVD / eigh / solve
calls (which JAX's CPU backend and scipy route through it) 20-200x slower.
:func:`one_blas_thread` limits BLAS to one thread inside a ``with`` block
(through ``threadpoolctl``; a no-op if it is not installed).

Example:
    >>> import jax.numpy as jnp
    >>> from jaxcomp.decompose.blas import one_blas_thread
    >>> with one_blas_thread():
    ...     s = jnp.linalg.svd(jnp.eye(3), compute_uv=False)
    >>> [float(v) for v in s]
    [1.0, 1.0, 1.0]
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def one_blas_thread(limit: int = 1) -> Iterator[None]:
    """Limit BLAS thread pools to ``limit`` threads for the duration of the block."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency of scikit-learn
        yield
        return
    with threadpool_limits(limits=limit, user_api="blas"):
        yield
