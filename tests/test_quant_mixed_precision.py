"""Mixed precision: rules, sizes, one-layer-at-a-time sensitivity, knapsack vs brute
force, greedy feasibility, the Pareto files, and bad input."""

import itertools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcomp.core.errors import ConfigError
from jaxcomp.quant import mixed_precision as mp
from jaxcomp.quant.uniform import fake_quant


def params3():
    ks = jax.random.split(jax.random.key(0), 3)
    return {"Dense_0": {"kernel": jax.random.normal(ks[0], (12, 8)), "bias": jnp.zeros(8)},
            "Dense_1": {"kernel": jax.random.normal(ks[1], (8, 6)), "bias": jnp.zeros(6)},
            "Dense_2": {"kernel": jax.random.normal(ks[2], (6, 3)), "bias": jnp.zeros(3)}}


def random_tables(seed, n_layers, cands):
    rng = np.random.default_rng(seed)
    drops, sizes = {}, {}
    for i in range(n_layers):
        n = int(rng.integers(10, 200))
        drops[f"l{i}"] = dict(zip(cands, np.sort(rng.random(len(cands)))[::-1].tolist(),
                                  strict=True))
        sizes[f"l{i}"] = {b: math.ceil(n * b / 8) + 4 for b in cands}
    return drops, sizes


def brute_force(drops, sizes, budget):
    names = list(drops)
    best = math.inf
    for combo in itertools.product(*[list(drops[p]) for p in names]):
        size = sum(sizes[p][b] for p, b in zip(names, combo, strict=True))
        if size <= budget:
            best = min(best, sum(drops[p][b] for p, b in zip(names, combo, strict=True)))
    return best


@pytest.mark.parametrize("seed", range(6))
def test_knapsack_matches_brute_force(seed):
    cands = [2, 4, 6, 8]
    drops, sizes = random_tables(seed, 4, cands)
    lo = mp.min_size(sizes)
    hi = sum(max(s.values()) for s in sizes.values())
    for budget in np.linspace(lo, hi, 7).round().astype(int).tolist():
        alloc = mp.allocate_knapsack(drops, sizes, budget)
        assert mp.total(sizes, alloc) <= budget
        assert mp.total(drops, alloc) == pytest.approx(brute_force(drops, sizes, budget),
                                                       abs=1e-12)
        g = mp.allocate_greedy(drops, sizes, budget)
        assert mp.total(sizes, g) <= budget
        assert mp.total(drops, g) >= mp.total(drops, alloc) - 1e-12


def test_knapsack_coarse_units_still_fit():
    drops, sizes = random_tables(9, 5, [2, 3, 4, 8])
    budget = (mp.min_size(sizes) + sum(max(s.values()) for s in sizes.values())) // 2
    alloc = mp.allocate_knapsack(drops, sizes, budget, max_cells=50)
    assert mp.total(sizes, alloc) <= budget
    assert mp.total(drops, alloc) >= brute_force(drops, sizes, budget) - 1e-12


def test_greedy_hand_example():
    # Lowering "a" costs 0.4 per 30 bytes; lowering "b" costs 0.01 per 30 bytes: b goes first.
    drops = {"a": {4: 0.4, 8: 0.0}, "b": {4: 0.01, 8: 0.0}}
    sizes = {"a": {4: 20, 8: 50}, "b": {4: 20, 8: 50}}
    assert mp.allocate_greedy(drops, sizes, 100) == {"a": 8, "b": 8}
    assert mp.allocate_greedy(drops, sizes, 99) == {"a": 8, "b": 4}
    assert mp.allocate_greedy(drops, sizes, 40) == {"a": 4, "b": 4}


# The reference: the uniform quantizer with static bits (mixed_precision passes traced bits).
fq_static = jax.jit(fake_quant, static_argnames=("bits", "axis"))


def test_bits_by_rules_and_quantize_layers():
    p = params3()
    bits = mp.bits_by_rules(p, [("Dense_0/.*", 4), ("Dense_2/.*", None), (".*", 8)])
    assert bits == {"Dense_0/kernel": 4, "Dense_1/kernel": 8}
    q = mp.quantize_layers(p, bits)
    np.testing.assert_array_equal(q["Dense_0"]["kernel"],
                                  fq_static(p["Dense_0"]["kernel"], bits=4, axis=1))
    np.testing.assert_array_equal(q["Dense_2"]["kernel"], p["Dense_2"]["kernel"])
    # 4-bit symmetric per channel: at most 15 distinct values per column.
    assert max(len(np.unique(np.asarray(q["Dense_0"]["kernel"])[:, j])) for j in range(8)) <= 15


def test_sizes_hand_computed():
    p = params3()
    assert mp.layer_bytes((12, 8), 4) == 48 + 32
    assert mp.layer_bytes((12, 8), 3, per_channel=False) == 36 + 4
    t = mp.size_table(p, ["Dense_1/kernel"], [8, 2])
    assert t == {"Dense_1/kernel": {2: 12 + 24, 8: 48 + 24}}
    assert mp.model_bytes(p, {"Dense_0/kernel": 8}) == 96 + 32 + 4 * (8 + 48 + 6 + 18 + 3)


@pytest.mark.parametrize("use_jit", [False, True])
def test_sensitivity_one_layer_at_a_time(use_jit):
    p = params3()
    x = jax.random.normal(jax.random.key(5), (32, 12))

    def forward(params):
        h = x
        for i in range(3):
            h = h @ params[f"Dense_{i}"]["kernel"] + params[f"Dense_{i}"]["bias"]
        return h

    ref = forward(p)
    fwd = jax.jit(forward) if use_jit else forward

    def loss(params):
        return float(jnp.mean((fwd(params) - ref) ** 2))

    base, sens = mp.sensitivity(p, loss, [2, 8], higher_is_better=False)
    assert base == 0.0
    assert set(sens) == {"Dense_0/kernel", "Dense_1/kernel", "Dense_2/kernel"}
    for path, d in sens.items():
        layer = path.split("/")[0]
        q = {**p, layer: {**p[layer], "kernel": fq_static(p[layer]["kernel"], bits=2, axis=1)}}
        assert d[2] == pytest.approx(loss(q), rel=1e-6)
        assert d[2] > d[8] >= 0.0


def test_pareto_front_and_files(tmp_path):
    drops, sizes = random_tables(3, 3, [2, 4, 8])
    front = mp.pareto_front(drops, sizes, n_points=10, extra_bytes=100,
                            measure=lambda bits: sum(bits.values()))
    assert len(front) >= 2
    by = [d["bytes"] for d in front]
    pd = [d["predicted_drop"] for d in front]
    assert by == sorted(by) and all(a > b for a, b in zip(pd, pd[1:], strict=False))
    assert all(d["bytes"] == mp.total(sizes, d["bits"]) + 100 for d in front)
    files = mp.write_pareto(front, tmp_path, "mp")
    assert json.loads(files["json"].read_text())[0]["bits"] == front[0]["bits"]
    rows = files["csv"].read_text().strip().splitlines()
    assert rows[0].startswith("budget,bytes,predicted_drop,measured")
    assert len(rows) == len(front) + 1
    assert files["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_input():
    p = params3()
    with pytest.raises(ConfigError, match=r"mixed_precision.bits\[Dense_0/kernel\]: got 9; "
                                          r"allowed: 2, 3, 4"):
        mp.bits_by_rules(p, [("Dense_0/kernel", 9)])
    with pytest.raises(ConfigError, match=r"mixed_precision.bits\[Dense_1/kernel\]: got 1"):
        mp.quantize_layers(p, {"Dense_1/kernel": 1})
    with pytest.raises(ConfigError, match="matches no parameter path"):
        mp.bits_by_rules(p, [("Conv_0/kernel", 4)])
    with pytest.raises(ConfigError, match=r"candidate_bits\[1\]: got 12"):
        mp.sensitivity(p, lambda q: 0.0, [4, 12])
    drops, sizes = random_tables(0, 2, [2, 8])
    lo = mp.min_size(sizes)
    for fn in (mp.allocate_knapsack, mp.allocate_greedy):
        with pytest.raises(ConfigError, match=rf"mixed_precision.budget: got {lo - 1} bytes; "
                                              rf"allowed range \[{lo}, inf\)"):
            fn(drops, sizes, lo - 1)
    with pytest.raises(ConfigError, match="mixed_precision.method"):
        mp.pareto_front(drops, sizes, method="dp")
