"""Tucker-2 decomposition of conv kernels over the input/output channel modes.

A flax conv kernel ``K: (kh, kw, cin, cout)`` becomes a core ``G: (kh, kw, r_in, r_out)``
and orthonormal factors ``U_in: (cin, r_in)``, ``U_out: (cout, r_out)`` with
``K ≈ G ×₃ U_in ×₄ U_out``. Initialized by HOSVD (leading eigenvectors of the
mode Gram matrices) and refined by ``n_iter`` HOOI sweeps in a
``lax.fori_loop`` — fixed work, so the whole function runs under ``jax.jit``.
The factorized layer is 1×1 conv (cin→r_in), k×k conv (r_in→r_out), 1×1 conv (r_out→cout).

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp.decompose.tucker import tucker2, tucker2_reconstruct
    >>> k = jax.random.normal(jax.random.key(0), (3, 3, 8, 12))
    >>> t = jax.jit(tucker2, static_argnums=1)(k, (8, 12))   # full rank: exact
    >>> bool(jnp.allclose(tucker2_reconstruct(t), k, atol=1e-4))
    True

References:
    Kim et al., "Compression of Deep Convolutional Neural Networks for Fast and Low
    Power Mobile Applications", ICLR 2016. De Lathauwer et al., "On the best rank-1
    and rank-(R1,...,RN) approximation of higher-order tensors", SIAM J. Matrix Anal. 2000.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxcomp.decompose._checks import check_finite, check_iters, check_ndim, check_rank


class Tucker2(NamedTuple):
    """``core: (kh, kw, r_in, r_out)``, ``u_in: (cin, r_in)``, ``u_out: (cout, r_out)``."""

    core: jax.Array
    u_in: jax.Array
    u_out: jax.Array


def check_tucker2_ranks(shape: Sequence[int], ranks: int | Sequence[int],
                        what: str = "kernel") -> tuple[int, int]:
    """``(r_in, r_out)`` checked against the kernel's channel sizes (an int means both)."""
    check_ndim(what, shape, 4, "Tucker-2")
    if isinstance(ranks, int):
        ranks = (ranks, ranks)
    if isinstance(ranks, str) or not isinstance(ranks, tuple | list):
        from jaxcomp.core.errors import ConfigError

        raise ConfigError(f"{what}: Tucker-2 ranks got {ranks!r}; expected an int or "
                          "(r_in, r_out)")
    ranks = tuple(ranks)
    if len(ranks) != 2:
        from jaxcomp.core.errors import ConfigError

        raise ConfigError(f"{what}: Tucker-2 ranks got {ranks!r}; expected (r_in, r_out)")
    return (check_rank(f"{what} (input channels)", ranks[0], shape[2]),
            check_rank(f"{what} (output channels)", ranks[1], shape[3]))


def _top(gram: jax.Array, r: int) -> jax.Array:
    """The ``r`` leading eigenvectors of a symmetric PSD matrix (columns)."""
    _, v = jnp.linalg.eigh(gram)
    return v[:, ::-1][:, :r]


def _gram_in(y: jax.Array) -> jax.Array:
    return jnp.einsum("hwib,hwjb->ij", y, y)


def _gram_out(y: jax.Array) -> jax.Array:
    return jnp.einsum("hwao,hwap->op", y, y)


def tucker2(kernel: jax.Array, ranks: int | Sequence[int], *, n_iter: int = 10,
            what: str = "kernel") -> Tucker2:
    """Tucker-2 of a 4-D kernel: HOSVD initialization, then ``n_iter`` HOOI sweeps.

    Args:
      kernel: ``(kh, kw, cin, cout)``.
      ranks: ``(r_in, r_out)`` (static), or one int for both.
      n_iter: HOOI sweeps (static; 0 = plain HOSVD).
      what: the layer path used in error messages.

    Returns:
      :class:`Tucker2` (float32).

    Raises:
      ConfigError: the kernel is not 4-D, or a rank is outside ``[1, channels]``.
    """
    r_in, r_out = check_tucker2_ranks(jnp.shape(kernel), ranks, what)
    n_iter = check_iters(what, n_iter)
    check_finite(what, kernel)
    return _tucker2(jnp.asarray(kernel, jnp.float32), r_in, r_out, n_iter)


@partial(jax.jit, static_argnums=(1, 2, 3))
def _tucker2(x: jax.Array, r_in: int, r_out: int, n_iter: int) -> Tucker2:
    u_in = _top(_gram_in(x), r_in)
    u_out = _top(_gram_out(x), r_out)

    def sweep(_, carry):
        u_in, u_out = carry
        u_in = _top(_gram_in(jnp.einsum("hwio,ob->hwib", x, u_out)), r_in)
        u_out = _top(_gram_out(jnp.einsum("hwio,ia->hwao", x, u_in)), r_out)
        return u_in, u_out

    u_in, u_out = lax.fori_loop(0, n_iter, sweep, (u_in, u_out))
    core = jnp.einsum("hwio,ia,ob->hwab", x, u_in, u_out)
    return Tucker2(core, u_in, u_out)


def tucker2_reconstruct(t: Tucker2) -> jax.Array:
    """``G ×₃ U_in ×₄ U_out`` — the dense kernel."""
    return jnp.einsum("hwab,ia,ob->hwio", t.core, t.u_in, t.u_out)


def tucker2_project(kernel: jax.Array, u_in: jax.Array, u_out: jax.Array) -> jax.Array:
    """``K ×₃ U_in U_inᵀ ×₄ U_out U_outᵀ``: the Tucker-2 reconstruction for given factors."""
    return jnp.einsum("hwio,ia,ja,ob,pb->hwjp", kernel, u_in, u_in, u_out, u_out)


def tucker2_params(shape: Sequence[int], ranks: Sequence[int]) -> int:
    """Weights of the three-conv form: ``cin r_in + kh kw r_in r_out + r_out cout``."""
    kh, kw, cin, cout = shape
    r_in, r_out = ranks
    return int(cin * r_in + kh * kw * r_in * r_out + r_out * cout)


def relative_error(approx: jax.Array, x: jax.Array) -> jax.Array:
    """``||approx - x|| / ||x||`` (Frobenius)."""
    return jnp.linalg.norm((approx - x).ravel()) / jnp.linalg.norm(jnp.ravel(x))
