"""Kernel ↔ factorized-layer params: decompose one kernel into the factors a
factorized layer uses, and rebuild the dense kernel from them.

A *spec* maps a layer's module path (``"Dense_0"``, ``"block0/conv1"``) to
``{"method": "svd" | "tucker2" | "cp", "rank": int | [r_in, r_out]}``; it is
plain data (JSON-able), the "config" of a factorized model.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp.decompose.convert import decompose_kernel, reconstruct_kernel
    >>> w = jnp.outer(jnp.arange(1.0, 5.0), jnp.arange(1.0, 4.0))      # rank 1
    >>> f = decompose_kernel(w, "svd", 1)
    >>> bool(jnp.allclose(reconstruct_kernel(f, "svd"), w, atol=1e-4))
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxcomp.core.errors import ConfigError, check_choice
from jaxcomp.decompose._checks import METHODS, np_integer
from jaxcomp.decompose.cp import cp_als, cp_reconstruct
from jaxcomp.decompose.layers import cp_layer_factors
from jaxcomp.decompose.svd import lowrank_factors, randomized_svd, truncated_svd
from jaxcomp.decompose.tucker import check_tucker2_ranks, tucker2

FACTOR_NAMES = {"svd": ("u", "v"), "tucker2": ("first", "core", "last"),
                "cp": ("first", "vertical", "horizontal", "last")}


def module_path(path: str) -> str:
    """``"Dense_0/kernel"`` → ``"Dense_0"`` (module paths pass through)."""
    return path[: -len("/kernel")] if path.endswith("/kernel") else path


def _int_rank(what: str, r: Any) -> int:
    """An integer rank (its range is checked against the kernel, naming the kernel path)."""
    if isinstance(r, bool) or not isinstance(r, int | np_integer()):
        raise ConfigError(f"{what}: rank got {r!r}; expected an integer >= 1")
    return int(r)


def normalize_spec(spec: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Check methods and rank types; keys become module paths; ranks become ints/lists."""
    if not isinstance(spec, Mapping):
        raise ConfigError(f"spec: got {type(spec).__name__} {spec!r:.40}; expected "
                          "{module_path: {'method': ..., 'rank': ...}}")
    out = {}
    for path, entry in spec.items():
        mp = module_path(path)
        if not isinstance(entry, Mapping) or "method" not in entry or "rank" not in entry:
            raise ConfigError(f"{mp}: spec entry {entry!r} needs 'method' and 'rank'")
        method = check_choice(f"{mp}: method", entry["method"], METHODS)
        rank = entry["rank"]
        if method == "tucker2":
            pair = (rank, rank) if isinstance(rank, int) else rank
            if isinstance(pair, str) or not isinstance(pair, Sequence) or len(pair) != 2:
                raise ConfigError(f"{mp}: rank got {rank!r}; expected an int or (r_in, r_out)")
            rank = [_int_rank(mp, r) for r in pair]
        else:
            rank = _int_rank(mp, rank)
        out[mp] = {"method": method, "rank": rank}
    return out


def decompose_kernel(kernel: jax.Array, method: str, rank: Any, *, key: jax.Array | None = None,
                     n_iter: int | None = None, randomized: bool = False,
                     what: str = "kernel") -> dict[str, jax.Array]:
    """Factors of ``kernel`` named as the factorized layer's params.

    svd: ``u (m, r), v (r, n)``; tucker2: ``first (cin, r_in), core, last (r_out, cout)``;
    cp: ``first, vertical, horizontal, last`` (weights folded into ``last``).
    ``key`` is needed for CP and for ``randomized=True`` SVD.
    """
    check_choice(f"{what}: method", method, METHODS)
    if method == "svd":
        if randomized:
            if key is None:
                raise ConfigError(f"{what}: randomized SVD needs an explicit key")
            f = randomized_svd(kernel, rank, key=key, what=what)
        else:
            f = truncated_svd(kernel, rank, what=what)
        u, v = lowrank_factors(f)
        return {"u": u, "v": v}
    if method == "tucker2":
        ranks = check_tucker2_ranks(jnp.shape(kernel), rank, what)
        t = tucker2(kernel, ranks, n_iter=10 if n_iter is None else n_iter, what=what)
        return {"first": t.u_in, "core": t.core, "last": t.u_out.T}
    if jnp.ndim(kernel) != 4:
        raise ConfigError(f"{what}: CP conv needs a 4-D kernel; got shape {jnp.shape(kernel)}")
    d = cp_als(kernel, rank, n_iter=50 if n_iter is None else n_iter, key=key, what=what)
    return cp_layer_factors(d.weights, d.factors)


def reconstruct_kernel(factors: Mapping[str, jax.Array], method: str) -> jax.Array:
    """The dense kernel a factorized layer computes."""
    if method == "svd":
        return factors["u"] @ factors["v"]
    if method == "tucker2":
        return jnp.einsum("hwab,ia,bo->hwio", factors["core"], factors["first"],
                          factors["last"])
    r = factors["first"].shape[1]
    return cp_reconstruct(cp_reconstruct_args(factors, r))


def cp_reconstruct_args(factors: Mapping[str, jax.Array], r: int):
    from jaxcomp.decompose.cp import CP

    return CP(jnp.ones((r,), factors["first"].dtype),
              (factors["vertical"], factors["horizontal"], factors["first"],
               factors["last"].T), jnp.zeros((0,)))
