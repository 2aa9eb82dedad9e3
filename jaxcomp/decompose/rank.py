"""Rank selection: energy threshold, parameter ratio, and analytic EVBMF.

These run on the host (numpy) once per layer: ranks are static structure.

Example:
    >>> import numpy as np
    >>> from jaxcomp.decompose.rank import energy_rank
    >>> energy_rank(np.array([3.0, 2.0, 1.0]), 0.9)   # 9/14, 13/14 >= 0.9
    2

References:
    Nakajima, Sugiyama, Babacan, Tomioka, "Global Analytic Solution of Fully-observed
    Variational Bayesian Matrix Factorization", JMLR 2013 (EVBMF). Kim et al., ICLR 2016
    (VBMF ranks for Tucker-2).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jaxcomp.core.errors import ConfigError, check_range
from jaxcomp.decompose._checks import check_energy, check_ndim


def energy_rank(s: np.ndarray, energy: float, *, what: str = "kernel") -> int:
    """The smallest ``r`` with ``sum(s[:r]**2) >= energy * sum(s**2)`` (``s`` descending)."""
    check_energy(what, energy)
    s2 = np.asarray(s, np.float64) ** 2
    total = s2.sum()
    if total <= 0:
        return 1
    frac = np.cumsum(s2) / total
    return int(min(np.searchsorted(frac, energy - 1e-12) + 1, len(s2)))


def ratio_rank(shape: Sequence[int], ratio: float, *, what: str = "kernel") -> int:
    """The SVD rank whose two factors hold about ``ratio`` of the dense weights.

    Example:
        >>> ratio_rank((784, 300), 0.15)
        32
    """
    check_range(f"{what}: ratio", ratio, 0.0, 1.0, lo_open=True)
    m, n = shape
    return int(max(1, min(min(m, n), np.floor(ratio * m * n / (m + n)))))


def mode_spectrum(kernel: np.ndarray, mode: int) -> np.ndarray:
    """Singular values of the mode-``mode`` unfolding."""
    k = np.asarray(kernel, np.float64)
    unf = np.moveaxis(k, mode, 0).reshape(k.shape[mode], -1)
    return np.linalg.svd(unf, compute_uv=False)


def _tau(x: np.ndarray, alpha: float) -> np.ndarray:
    return 0.5 * (x - (1 + alpha) + np.sqrt(np.maximum((x - (1 + alpha)) ** 2 - 4 * alpha, 0)))


def _evb_objective(sigma2: float, L: int, M: int, s: np.ndarray, residual: float,
                   xubar: float) -> float:
    H = len(s)
    alpha = L / M
    x = s ** 2 / (M * sigma2)
    z1 = x[x > xubar]
    z2 = x[x <= xubar]
    tau_z1 = _tau(z1, alpha)
    term1 = np.sum(z2 - np.log(z2))
    term2 = np.sum(z1 - tau_z1)
    term3 = np.sum(np.log((tau_z1 + 1) / z1))
    term4 = alpha * np.sum(np.log(tau_z1 / alpha + 1))
    return float(term1 + term2 + term3 + term4 + residual / (M * sigma2)
                 + (L - H) * np.log(sigma2))


def evbmf(y: np.ndarray, sigma2: float | None = None) -> tuple[int, float]:
    """Analytic empirical VBMF (Nakajima et al. 2013): ``(rank, noise variance)``.

    The noise variance is estimated by a bounded 1-D minimization of the free
    energy unless ``sigma2`` is given; components whose singular value exceeds
    ``sqrt(M σ² (1 + τ̄)(1 + α/τ̄))`` are kept.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> y = rng.normal(size=(40, 3)) @ rng.normal(size=(3, 60)) * 3
        >>> evbmf(y + 0.1 * rng.normal(size=(40, 60)))[0]
        3
    """
    from scipy.optimize import minimize_scalar

    y = np.asarray(y, np.float64)
    if y.ndim != 2:
        raise ConfigError(f"evbmf: needs a matrix; got shape {y.shape}")
    if sigma2 is not None:
        from jaxcomp.core.errors import check_number

        check_number("evbmf: sigma2", sigma2, 0.0, None, lo_open=True)
    if y.shape[0] > y.shape[1]:
        y = y.T
    L, M = y.shape
    H = L
    alpha = L / M
    tauubar = 2.5129 * np.sqrt(alpha)
    s = np.linalg.svd(y, compute_uv=False)[:H]
    residual = 0.0
    if sigma2 is None:
        xubar = (1 + tauubar) * (1 + alpha / tauubar)
        eh_ub = int(min(np.ceil(L / (1 + alpha)) - 1, H)) - 1
        upper = (np.sum(s ** 2) + residual) / (L * M)
        lower = max(s[eh_ub + 1] ** 2 / (M * xubar), np.mean(s[eh_ub + 1:] ** 2) / M)
        if not upper > lower:
            return (int(L), float(upper))
        res = minimize_scalar(_evb_objective, args=(L, M, s, residual, xubar),
                              bounds=[lower, upper], method="bounded")
        sigma2 = float(res.x)
    threshold = np.sqrt(M * sigma2 * (1 + tauubar) * (1 + alpha / tauubar))
    return int(np.sum(s > threshold)), float(sigma2)


def vbmf_tucker2_ranks(kernel: np.ndarray, *, what: str = "kernel") -> tuple[int, int]:
    """Tucker-2 ranks by EVBMF on the input- and output-channel unfoldings (Kim et al.),
    at least 1 each."""
    k = np.asarray(kernel, np.float64)
    check_ndim(what, k.shape, 4, "Tucker-2")
    ranks = []
    for mode in (2, 3):
        unf = np.moveaxis(k, mode, 0).reshape(k.shape[mode], -1)
        ranks.append(max(1, evbmf(unf)[0]))
    return ranks[0], ranks[1]


def energy_tucker2_ranks(kernel: np.ndarray, energy: float, *,
                         what: str = "kernel") -> tuple[int, int]:
    """Tucker-2 ranks keeping ``energy`` of each channel unfolding's squared spectrum."""
    check_ndim(what, np.shape(kernel), 4, "Tucker-2")
    return (energy_rank(mode_spectrum(kernel, 2), energy, what=what),
            energy_rank(mode_spectrum(kernel, 3), energy, what=what))
