"""Tensor-train (TT-matrix) decomposition of large Dense kernels.

A kernel ``W: (prod(in_modes), prod(out_modes))`` is reshaped to
``(i₁…i_d, o₁…o_d)``, its modes paired as ``(i₁o₁, …, i_do_d)`` and split by
sequential truncated SVDs (TT-SVD) into cores ``G_k: (r_{k-1}, i_k, o_k, r_k)``
(``r_0 = r_d = 1``). Static ranks, so it runs under ``jax.jit``.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp.decompose.tt import tt_matrix, tt_matrix_reconstruct
    >>> w = jax.random.normal(jax.random.key(0), (12, 20))
    >>> cores = tt_matrix(w, (3, 4), (4, 5), rank=12)      # full rank: exact
    >>> bool(jnp.allclose(tt_matrix_reconstruct(cores), w, atol=1e-4))
    True

References:
    Oseledets, "Tensor-Train Decomposition", SIAM J. Sci. Comput. 2011. Novikov et al.,
    "Tensorizing Neural Networks", NeurIPS 2015.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jaxcomp.core.errors import ConfigError
from jaxcomp.decompose._checks import check_finite, check_ndim, check_rank


def tt_max_ranks(in_modes: Sequence[int], out_modes: Sequence[int]) -> list[int]:
    """The largest useful rank of each of the ``d - 1`` inner bonds."""
    sizes = [i * o for i, o in zip(in_modes, out_modes, strict=True)]
    return [min(math.prod(sizes[:k + 1]), math.prod(sizes[k + 1:]))
            for k in range(len(sizes) - 1)]


def tt_ranks(in_modes: Sequence[int], out_modes: Sequence[int], rank: int | Sequence[int],
             what: str = "kernel") -> list[int]:
    """The inner bond ranks: one int is clipped to each bond's maximum; a list is checked."""
    maxes = tt_max_ranks(in_modes, out_modes)
    if isinstance(rank, int):
        check_rank(what, rank)
        return [min(rank, m) for m in maxes]
    rank = list(rank)
    if len(rank) != len(maxes):
        raise ConfigError(f"{what}: TT ranks got {rank}; expected {len(maxes)} inner ranks")
    return [check_rank(f"{what} (TT bond {k})", r, m)
            for k, (r, m) in enumerate(zip(rank, maxes, strict=True))]


def tt_matrix(w: jax.Array, in_modes: Sequence[int], out_modes: Sequence[int],
              rank: int | Sequence[int], *, what: str = "kernel") -> list[jax.Array]:
    """TT-SVD of a Dense kernel into cores ``(r_{k-1}, i_k, o_k, r_k)``.

    Raises:
      ConfigError: the kernel is not 2-D, the modes do not multiply to its shape,
        or a rank is out of range.
    """
    check_ndim(what, jnp.shape(w), 2, "TT-matrix")
    check_finite(what, w)
    in_modes, out_modes = tuple(in_modes), tuple(out_modes)
    if len(in_modes) != len(out_modes) or math.prod(in_modes) != w.shape[0] or \
            math.prod(out_modes) != w.shape[1]:
        raise ConfigError(f"{what}: TT modes {in_modes} x {out_modes} do not factor the "
                          f"kernel shape {tuple(w.shape)} (equal lengths, products = shape)")
    ranks = [1, *tt_ranks(in_modes, out_modes, rank, what), 1]
    d = len(in_modes)
    t = jnp.asarray(w, jnp.float32).reshape(*in_modes, *out_modes)
    t = jnp.transpose(t, [a for k in range(d) for a in (k, d + k)])
    cores = []
    rest = t.reshape(-1)
    for k in range(d - 1):
        rows = ranks[k] * in_modes[k] * out_modes[k]
        mat = rest.reshape(rows, -1)
        u, s, vt = jnp.linalg.svd(mat, full_matrices=False)
        r = ranks[k + 1]
        cores.append(u[:, :r].reshape(ranks[k], in_modes[k], out_modes[k], r))
        rest = s[:r, None] * vt[:r]
    cores.append(rest.reshape(ranks[d - 1], in_modes[-1], out_modes[-1], 1))
    return cores


def tt_matrix_reconstruct(cores: Sequence[jax.Array]) -> jax.Array:
    """The dense ``(prod(i_k), prod(o_k))`` kernel from TT-matrix cores."""
    full = cores[0]  # (1, i1, o1, r1)
    ins = [c.shape[1] for c in cores]
    outs = [c.shape[2] for c in cores]
    full = full.reshape(ins[0], outs[0], -1)
    for c in cores[1:]:
        full = jnp.einsum("...r,rios->...ios", full, c)
    full = full.reshape(*[v for pair in zip(ins, outs, strict=True) for v in pair])
    d = len(cores)
    full = jnp.transpose(full, [2 * k for k in range(d)] + [2 * k + 1 for k in range(d)])
    return full.reshape(math.prod(ins), math.prod(outs))


def tt_params(cores_shapes: Sequence[Sequence[int]]) -> int:
    """Total weights of the cores."""
    return int(sum(math.prod(s) for s in cores_shapes))
