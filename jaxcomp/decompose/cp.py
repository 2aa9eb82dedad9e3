"""CP (CANDECOMP/PARAFAC) decomposition by alternating least squares.

``X ≈ Σ_r w_r a¹_r ∘ a²_r ∘ …``. ``n_iter`` ALS sweeps run in a ``lax.fori_loop``
(fixed work, jittable, float32); the relative reconstruction error after each
sweep is returned as a convergence report. For a conv kernel
``(kh, kw, cin, cout)`` the factorized layer is 1×1 conv (cin→R), depthwise kh×1,
depthwise 1×kw, 1×1 conv (R→cout).

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp.decompose.cp import cp_als, cp_reconstruct
    >>> k = jax.random.normal(jax.random.key(0), (3, 3, 4, 5))
    >>> d = cp_als(k, 8, n_iter=20, key=jax.random.key(1))
    >>> d.errors.shape, bool(d.errors[-1] <= d.errors[0] + 1e-6)
    ((20,), True)

References:
    Lebedev et al., "Speeding-up Convolutional Neural Networks Using Fine-tuned
    CP-Decomposition", ICLR 2015. Kolda & Bader, "Tensor Decompositions and
    Applications", SIAM Review 2009.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxcomp.core.errors import ConfigError
from jaxcomp.decompose._checks import check_finite, check_iters, check_rank


class CP(NamedTuple):
    """``weights: (R,)``, ``factors``: one ``(I_n, R)`` per mode (unit-norm columns),
    ``errors: (n_iter,)`` relative error after each ALS sweep."""

    weights: jax.Array
    factors: tuple[jax.Array, ...]
    errors: jax.Array


def _mttkrp(x: jax.Array, factors: Sequence[jax.Array], mode: int) -> jax.Array:
    letters = string.ascii_lowercase[: x.ndim]
    terms = [letters] + [f"{letters[k]}z" for k in range(x.ndim) if k != mode]
    ops = [x] + [factors[k] for k in range(x.ndim) if k != mode]
    return jnp.einsum(",".join(terms) + f"->{letters[mode]}z", *ops)


def svd_init(x: jax.Array, rank: int, key: jax.Array) -> tuple[jax.Array, ...]:
    """Leading left singular vectors of each unfolding; columns beyond the mode
    size are standard normal from ``key`` (as tensorly's ``init='svd'``)."""
    keys = jax.random.split(key, x.ndim)
    out = []
    for n in range(x.ndim):
        unf = jnp.moveaxis(x, n, 0).reshape(x.shape[n], -1)
        u, _, _ = jnp.linalg.svd(unf, full_matrices=False)
        u = u[:, :rank]
        if u.shape[1] < rank:
            extra = jax.random.normal(keys[n], (x.shape[n], rank - u.shape[1]), x.dtype)
            u = jnp.concatenate([u, extra], axis=1)
        out.append(u)
    return tuple(out)


_svd_init_jit = jax.jit(svd_init, static_argnums=1)


def cp_als(x: jax.Array, rank: int, *, n_iter: int = 50, key: jax.Array | None = None,
           init: Sequence[jax.Array] | None = None, what: str = "kernel") -> CP:
    """CP decomposition by ``n_iter`` ALS sweeps.

    Args:
      x: any tensor with ``ndim >= 2``.
      rank: the number of components (static).
      n_iter: ALS sweeps (static).
      key: for the random columns of the SVD initialization (needed unless ``init``).
      init: initial factors ``(I_n, rank)`` per mode (e.g. a warm start).
      what: the layer path used in error messages.
    """
    x = jnp.asarray(x, jnp.float32)
    if x.ndim < 2:
        raise ConfigError(f"{what}: CP needs a tensor with >= 2 dims; got shape {x.shape}")
    rank = check_rank(what, rank)
    n_iter = check_iters(what, n_iter)
    check_finite(what, x)
    if init is None:
        if key is None:
            raise ConfigError(f"{what}: CP initialization needs an explicit key (or init=)")
        factors = _svd_init_jit(x, rank, key)
    else:
        factors = tuple(jnp.asarray(f, jnp.float32) for f in init)
        want = [(s, rank) for s in x.shape]
        if [tuple(f.shape) for f in factors] != want:
            raise ConfigError(f"{what}: CP init shapes {[f.shape for f in factors]}; "
                              f"expected {want}")
    return _als(x, tuple(factors), n_iter)


@partial(jax.jit, static_argnums=2)
def _als(x: jax.Array, factors: tuple[jax.Array, ...], n_iter: int) -> CP:
    # one compiled function per (shapes, n_iter): repeated eager calls reuse it
    rank = factors[0].shape[1]
    norm_x2 = jnp.sum(x * x)

    def sweep(i, carry):
        fs, errs = carry
        fs = list(fs)
        for n in range(x.ndim):
            v = jnp.ones((rank, rank), x.dtype)
            for k in range(x.ndim):
                if k != n:
                    v = v * (fs[k].T @ fs[k])
            m = _mttkrp(x, fs, n)
            # a ridge at float32 round-off keeps singular normal equations (a mode
            # smaller than the rank) finite without changing well-posed solves
            ridge = jnp.finfo(x.dtype).eps * jnp.trace(v) / rank + jnp.finfo(x.dtype).tiny
            fs[n] = jnp.linalg.solve(v + ridge * jnp.eye(rank, dtype=x.dtype), m.T).T
        gram = v * (fs[-1].T @ fs[-1])
        inner = jnp.sum(fs[-1] * m)
        err = jnp.sqrt(jnp.maximum(norm_x2 - 2 * inner + jnp.sum(gram), 0.0) / norm_x2)
        return tuple(fs), errs.at[i].set(err)

    factors, errors = lax.fori_loop(0, n_iter, sweep,
                                    (factors, jnp.zeros((n_iter,), x.dtype)))
    norms = [jnp.linalg.norm(f, axis=0) for f in factors]
    weights = jnp.prod(jnp.stack(norms), axis=0)
    factors = tuple(f / jnp.where(n > 0, n, 1.0) for f, n in zip(factors, norms, strict=True))
    return CP(weights, factors, errors)


def cp_reconstruct(d: CP) -> jax.Array:
    """``Σ_r w_r a¹_r ∘ a²_r ∘ …`` — the dense tensor."""
    n = len(d.factors)
    letters = string.ascii_lowercase[:n]
    expr = "z," + ",".join(f"{c}z" for c in letters) + "->" + letters
    return jnp.einsum(expr, d.weights, *d.factors)


def cp_params(shape: Sequence[int], rank: int) -> int:
    """Weights of the CP form: ``rank * sum(shape)``."""
    return int(rank * sum(shape))
