"""Turn a rank policy into a factorization spec for a model's params.

Policies: a fixed rank, an energy threshold, EVBMF (VBMF ranks as in Kim et al.
2016), or a global parameter budget (a fraction of the selected layers' dense
weights) distributed by :func:`jaxcomp.decompose.budget.allocate`.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp.decompose.plan import make_spec
    >>> params = {"Dense_0": {"kernel": jnp.diag(jnp.array([3.0, 2.0, 0.1])),
    ...                       "bias": jnp.zeros(3)}}
    >>> make_spec(params, "svd", selection="energy", energy=0.95)
    {'Dense_0': {'method': 'svd', 'rank': 2}}
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxcomp.core import paths as _paths
from jaxcomp.core.errors import ConfigError, check_choice, check_range
from jaxcomp.core.select import Where, select
from jaxcomp.decompose._checks import check_rank
from jaxcomp.decompose.budget import allocate, svd_candidates, tucker2_candidates
from jaxcomp.decompose.convert import METHODS, module_path
from jaxcomp.decompose.rank import energy_rank, energy_tucker2_ranks, evbmf, vbmf_tucker2_ranks
from jaxcomp.decompose.tucker import check_tucker2_ranks

SELECTIONS = ("fixed", "energy", "vbmf", "budget")
_NDIM = {"svd": 2, "tucker2": 4, "cp": 4}


def eligible_kernels(params: Any, method: str, where: Where = None) -> dict[str, np.ndarray]:
    """``{kernel_path: kernel}`` to factorize: ``where``'s selection (default: every
    ``kernel`` of the right rank for ``method``). A selected kernel of the wrong rank is
    a :class:`ConfigError` naming its path."""
    check_choice("decompose.method", method, METHODS)
    flat = _paths.path_dict(params)
    nd = _NDIM[method]
    if where is None or (isinstance(where, tuple | list) and len(where) == 0):
        out = {p: np.asarray(x) for p, x in flat.items()
               if p.endswith("kernel") and np.ndim(x) == nd}
        if not out:
            raise ConfigError(f"decompose.where: no {nd}-D kernel for method {method!r}; "
                              f"kernels: {[p for p in flat if p.endswith('kernel')]}")
        return out
    out = {}
    for p, s in select(params, list(where) if isinstance(where, tuple) else where).items():
        if not s:
            continue
        if np.ndim(flat[p]) != nd:
            raise ConfigError(f"{p}: method {method!r} needs a {nd}-D kernel; got shape "
                              f"{tuple(np.shape(flat[p]))}")
        out[p] = np.asarray(flat[p])
    return out


def make_spec(params: Any, method: str, *, rank: Any = 0, selection: str | None = None,
              energy: float = 0.9, budget: float = 0.25,
              where: Where = None) -> dict[str, dict[str, Any]]:
    """A spec ``{module_path: {"method", "rank"}}`` for the selected kernels.

    Args:
      params: the trained params.
      method: ``"svd"``, ``"tucker2"`` or ``"cp"``.
      rank: a fixed rank for every layer (``0`` = choose by ``selection``).
      selection: ``"fixed"`` (needs ``rank``), ``"energy"``, ``"vbmf"`` or ``"budget"``;
        default ``"fixed"`` if ``rank`` else ``"energy"``.
      energy: kept fraction of the squared spectrum, in ``(0, 1]``.
      budget: kept fraction of the selected layers' dense weights, in ``(0, 1]``.
      where: selection rules over kernel paths.
    """
    selection = selection or ("fixed" if rank else "energy")
    check_choice("decompose.selection", selection, SELECTIONS)
    kernels = eligible_kernels(params, method, where)
    spec: dict[str, dict[str, Any]] = {}
    if selection == "fixed":
        for p, k in kernels.items():
            spec[module_path(p)] = {"method": method, "rank": _fixed(p, k, method, rank)}
        return spec
    if selection == "budget":
        check_range("decompose.budget", budget, 0.0, 1.0, lo_open=True)
        return _budget_spec(kernels, method, budget)
    for p, k in kernels.items():
        if method == "cp":
            raise ConfigError(f"{p}: CP rank selection {selection!r} is not available; set "
                              "decompose.rank > 0 or decompose.selection='budget'")
        if selection == "energy":
            r = energy_rank(np.linalg.svd(k, compute_uv=False), energy, what=p) \
                if method == "svd" else list(energy_tucker2_ranks(k, energy, what=p))
        else:
            r = max(1, evbmf(k)[0]) if method == "svd" else list(vbmf_tucker2_ranks(k, what=p))
        spec[module_path(p)] = {"method": method, "rank": r}
    return spec


def _fixed(path: str, kernel: np.ndarray, method: str, rank: Any) -> Any:
    if method == "svd":
        return check_rank(path, rank, min(kernel.shape))
    if method == "tucker2":
        return list(check_tucker2_ranks(kernel.shape, rank, path))
    return check_rank(path, rank)


def _budget_spec(kernels: dict[str, np.ndarray], method: str, fraction: float):
    total = sum(k.size for k in kernels.values())
    budget = fraction * total
    if method == "cp":
        spec = {}
        for p, k in kernels.items():
            r = int(np.floor(fraction * k.size / sum(k.shape)))
            if r < 1:
                raise ConfigError(f"decompose.budget: got {fraction:g}; {p} needs at least "
                                  f"{sum(k.shape) / k.size:.3g} for CP rank 1")
            spec[module_path(p)] = {"method": "cp", "rank": r}
        return spec
    if method == "svd":
        cands = {p: svd_candidates(np.linalg.svd(k, compute_uv=False), k.shape)
                 for p, k in kernels.items()}
    else:
        cands = {p: tucker2_candidates(k) for p, k in kernels.items()}
    try:
        ranks = allocate(cands, budget)
    except ConfigError as e:
        raise ConfigError(f"decompose.budget: fraction {fraction:g} ({budget:g} weights) is "
                          f"below the minimum: {e}") from None
    return {module_path(p): {"method": method, "rank": list(r) if isinstance(r, tuple) else r}
            for p, r in ranks.items()}
