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

_loaded = False


def _load_lapack() -> None:
    """Make JAX and scipy load their LAPACK/BLAS libraries now.

    ``threadpoolctl`` only limits libraries already loaded when the limit is set,
    and JAX loads its CPU LAPACK lazily on the first linear-algebra call.
    """
    global _loaded
    if _loaded:
        return
    import jax
    import jax.numpy as jnp
    import scipy.linalg  # noqa: F401

    jax.block_until_ready(jnp.linalg.eigh(jnp.eye(2)))
    jax.block_until_ready(jnp.linalg.svd(jnp.eye(2)))
    _loaded = True


@contextlib.contextmanager
def one_blas_thread(limit: int = 1) -> Iterator[None]:
    """Limit BLAS thread pools to ``limit`` threads for the duration of the block."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency of scikit-learn
        yield
        return
    _load_lapack()
    with threadpool_limits(limits=limit, user_api="blas"):
        yield
