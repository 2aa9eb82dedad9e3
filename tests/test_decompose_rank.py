"""Rank selection: energy, ratio, EVBMF, Tucker-2 VBMF, and the global budget allocator."""

import itertools

import numpy as np
import pytest

from jaxcomp.core.errors import ConfigError
from jaxcomp.decompose import (
    allocate,
    energy_rank,
    energy_tucker2_ranks,
    evbmf,
    ratio_rank,
    svd_candidates,
    vbmf_tucker2_ranks,
)
from jaxcomp.decompose.plan import make_spec


def test_energy_rank_hand_computed():
    s = np.array([4.0, 2.0, 1.0, 1.0])            # energies 16, 4, 1, 1 of 22
    assert energy_rank(s, 16 / 22) == 1
    assert energy_rank(s, 0.8) == 2
    assert energy_rank(s, 21 / 22) == 3
    assert energy_rank(s, 1.0) == 4


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5])
def test_energy_outside_unit_interval_is_config_error(bad):
    with pytest.raises(ConfigError, match=r"Dense_0/kernel: energy.*\(0, 1\]"):
        energy_rank(np.ones(3), bad, what="Dense_0/kernel")


def test_ratio_rank():
    assert ratio_rank((784, 300), 0.15) == int(0.15 * 784 * 300 / 1084)
    assert ratio_rank((10, 10), 1.0) == 5
    assert ratio_rank((10, 10), 1e-6) == 1


@pytest.mark.parametrize("true_rank", [2, 5])
def test_evbmf_recovers_planted_rank(true_rank):
    rng = np.random.default_rng(true_rank)
    y = rng.normal(size=(60, true_rank)) @ rng.normal(size=(true_rank, 80)) * 2.0
    noise = 0.2
    r, sigma2 = evbmf(y + noise * rng.normal(size=y.shape))
    assert r == true_rank
    assert sigma2 == pytest.approx(noise ** 2, rel=0.3)


def test_evbmf_threshold_with_known_noise():
    # with sigma2 given, the kept components are those above the analytic threshold
    L, M, sigma2 = 4, 10, 1.0
    s = np.array([20.0, 9.0, 3.0, 1.0])
    y = np.zeros((L, M))
    y[np.arange(L), np.arange(L)] = s
    alpha = L / M
    tau = 2.5129 * np.sqrt(alpha)
    thr = np.sqrt(M * sigma2 * (1 + tau) * (1 + alpha / tau))
    assert evbmf(y, sigma2=sigma2)[0] == int(np.sum(s > thr))


def test_tucker2_rank_selectors():
    rng = np.random.default_rng(0)
    core = rng.normal(size=(3, 3, 2, 3))
    k = np.einsum("hwab,ia,ob->hwio", core, rng.normal(size=(10, 2)), rng.normal(size=(12, 3)))
    assert energy_tucker2_ranks(k, 0.999999) == (2, 3)
    assert vbmf_tucker2_ranks(k + 0.01 * rng.normal(size=k.shape)) == (2, 3)
    with pytest.raises(ConfigError, match="Conv_0/kernel: Tucker-2 needs a 4-D kernel"):
        vbmf_tucker2_ranks(np.ones((3, 3)), what="Conv_0/kernel")


def _brute(cands, budget):
    best_d = np.inf
    for combo in itertools.product(*[range(len(c.ranks)) for c in cands.values()]):
        cost = sum(c.costs[i] for c, i in zip(cands.values(), combo, strict=True))
        dist = sum(c.distortion[i] for c, i in zip(cands.values(), combo, strict=True))
        if cost <= budget and dist < best_d:
            best_d = dist
    return best_d


def test_budget_allocation_near_optimal_and_within_budget():
    rng = np.random.default_rng(1)
    cands = {f"l{i}/kernel": svd_candidates(np.sort(rng.gamma(1.0, size=6))[::-1], (6, 8))
             for i in range(3)}
    for budget in (60, 120, 200):
        ranks = allocate(cands, budget)
        cost = sum(r * 14 for r in ranks.values())
        dist = sum(cands[p].distortion[r - 1] for p, r in ranks.items())
        assert cost <= budget
        # greedy on convex-ish spectra: within 10% of the exhaustive optimum
        assert dist <= _brute(cands, budget) * 1.1 + 1e-9


def test_budget_below_minimum_is_config_error():
    cands = {"Dense_0/kernel": svd_candidates(np.ones(4), (4, 4))}
    with pytest.raises(ConfigError, match=r"got 5.*minimum.*Dense_0/kernel.*is 8"):
        allocate(cands, 5)


def test_make_spec_policies_and_errors():
    rng = np.random.default_rng(2)
    params = {"Dense_0": {"kernel": rng.normal(size=(20, 16)).astype(np.float32),
                          "bias": np.zeros(16, np.float32)},
              "Conv_0": {"kernel": rng.normal(size=(3, 3, 4, 6)).astype(np.float32)}}
    assert make_spec(params, "svd", rank=3) == {"Dense_0": {"method": "svd", "rank": 3}}
    assert make_spec(params, "tucker2", rank=2) == {"Conv_0": {"method": "tucker2",
                                                               "rank": [2, 2]}}
    spec = make_spec(params, "svd", selection="budget", budget=0.5)
    assert spec["Dense_0"]["rank"] * 36 <= 0.5 * 320
    with pytest.raises(ConfigError, match=r"Dense_0/kernel: rank got 17; allowed range"):
        make_spec(params, "svd", rank=17)
    with pytest.raises(ConfigError, match=r"Dense_0/kernel: method 'tucker2' needs a 4-D"):
        make_spec(params, "tucker2", rank=2, where=("Dense_0/kernel",))
    with pytest.raises(ConfigError, match=r"decompose.budget.*minimum"):
        make_spec(params, "svd", selection="budget", budget=0.01)
    with pytest.raises(ConfigError, match=r"decompose.budget: got 1.5"):
        make_spec(params, "svd", selection="budget", budget=1.5)
