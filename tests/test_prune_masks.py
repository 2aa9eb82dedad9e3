"""Exact masks against a numpy stable-argsort reference, in jit and eager, and bad inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcomp.core.errors import ConfigError
from jaxcomp.prune import masks as M
from jaxcomp.prune.select_k import order_keys, smallest_k


def ref_prune(flat, z):
    """numpy reference: prune the z smallest, ties by index (stable sort)."""
    out = np.zeros(flat.size, bool)
    out[np.argsort(flat, kind="stable")[:z]] = True
    return out


def maybe_jit(fn, use_jit):
    return jax.jit(fn) if use_jit else fn


def test_order_keys_monotone():
    x = np.array([-np.inf, -3.5, -1e-30, -0.0, 0.0, 1e-38, 2.0, np.inf], np.float32)
    k = np.asarray(order_keys(jnp.asarray(x)))
    assert np.all(k[1:] > k[:-1])


@pytest.mark.parametrize("use_jit", [True, False])
@pytest.mark.parametrize("s", [0.0, 0.25, 0.5, 0.9, 0.999])
def test_topk_mask_matches_numpy(use_jit, s):
    x = np.array(jax.random.normal(jax.random.key(1), (37, 11)))
    x[3, :5] = x[0, 0]  # ties
    mask = maybe_jit(M.topk_mask, use_jit)(jnp.asarray(np.abs(x)), s)
    z = int(np.round(np.float32(s) * x.size))
    np.testing.assert_array_equal(~np.asarray(mask).reshape(-1), ref_prune(np.abs(x).ravel(), z))
    assert int((~mask).sum()) == z


def test_hand_computed_ties_and_negative_scores():
    s = jnp.array([2.0, -1.0, 2.0, 0.5, 2.0])
    # prune 3: -1.0 (idx 1), 0.5 (idx 3), then the first 2.0 (idx 0)
    assert np.asarray(smallest_k([s], 3)[0]).tolist() == [True, True, False, True, False]


@pytest.mark.parametrize("use_jit", [True, False])
def test_global_masks_exact_count_and_reference(use_jit):
    keys = jax.random.split(jax.random.key(0), 3)
    leaves = {f"l{i}": jnp.abs(jax.random.normal(k, (20 + 7 * i, 9))) for i, k in
              enumerate(keys)}
    leaves["l1"] = leaves["l1"].at[0].set(leaves["l0"][0, 0])  # cross-leaf ties
    out = maybe_jit(lambda d, s: M.global_masks(d, s), use_jit)(leaves, 0.7)
    flat = np.concatenate([np.asarray(v).ravel() for v in leaves.values()])
    z = int(np.round(np.float32(0.7) * flat.size))
    got = np.concatenate([~np.asarray(out[p]).ravel() for p in leaves])
    np.testing.assert_array_equal(got, ref_prune(flat, z))


def test_global_normalize_l2_reference():
    a = jnp.array([1.0, 2.0, 3.0])
    b = jnp.array([10.0, 40.0])
    out = M.global_masks({"a": a, "b": b}, 0.4, normalize="l2")
    na, nb = np.asarray(a) / np.linalg.norm(a), np.asarray(b) / np.linalg.norm(b)
    ref = ref_prune(np.concatenate([na, nb]), 2)
    np.testing.assert_array_equal(np.concatenate([~out["a"], ~out["b"]]), ref)


def test_vmap_over_sparsity_compiles_once():
    x = jnp.abs(jax.random.normal(jax.random.key(2), (64, 8)))
    traces = []

    def f(s):
        traces.append(1)
        return M.topk_mask(x, s)

    out = jax.jit(jax.vmap(f))(jnp.array([0.1, 0.5, 0.9]))
    assert [int((~m).sum()) for m in out] == [51, 256, 461]
    assert len(traces) == 1


def test_erk_total_and_shape_dependence():
    shapes = {"a": (784, 300), "b": (300, 100), "c": (100, 10)}
    sp = M.erk_sparsities(shapes, 0.9)
    n = {k: np.prod(v) for k, v in shapes.items()}
    total = sum(float(sp[k]) * n[k] for k in shapes) / sum(n.values())
    assert abs(total - 0.9) < 1e-5
    assert float(sp["a"]) > float(sp["b"]) > float(sp["c"])  # big layers pruned hardest
    # a hand case: raw density (a+b)/(ab); eps solves eps*(sum raw*n) = keep
    sp2 = M.erk_sparsities({"x": (4, 4), "y": (2, 8)}, 0.5)
    raw = np.array([8 / 16, 10 / 16])
    eps = 16 / (raw * 16).sum()
    np.testing.assert_allclose([float(sp2["x"]), float(sp2["y"])], 1 - eps * raw, rtol=1e-6)


@pytest.mark.parametrize("use_jit", [True, False])
def test_nm_mask_reference(use_jit):
    x = np.asarray(jax.random.normal(jax.random.key(3), (8, 12)))
    mask = np.asarray(maybe_jit(lambda v: M.nm_mask(v, 2, 4, axis=0), use_jit)(jnp.asarray(x)))
    for col in range(12):
        for g in range(2):
            grp = x[4 * g:4 * g + 4, col]
            keep = np.argsort(-grp, kind="stable")[:2]
            ref = np.zeros(4, bool)
            ref[keep] = True
            np.testing.assert_array_equal(mask[4 * g:4 * g + 4, col], ref)
    assert mask.sum() == x.size // 2


def test_block_mask_reference():
    x = np.abs(np.asarray(jax.random.normal(jax.random.key(4), (8, 8))))
    mask = np.asarray(M.block_mask(jnp.asarray(x), 0.5, (4, 4)))
    means = x.reshape(2, 4, 2, 4).mean(axis=(1, 3)).ravel()
    pruned = ref_prune(means, 2).reshape(2, 2)
    np.testing.assert_array_equal(mask, np.kron(~pruned, np.ones((4, 4), bool)))


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan")])
def test_sparsity_out_of_range(bad):
    with pytest.raises(ConfigError, match=r"sparsity.*\[0, 1\)|sparsity.*finite"):
        M.topk_mask(jnp.ones(4), bad)


def test_bad_nm_and_block_and_mask_shape():
    with pytest.raises(ConfigError, match="Dense_0/kernel.*0 < N <= M"):
        M.nm_mask(jnp.ones((4, 4)), 5, 4, path="Dense_0/kernel")
    with pytest.raises(ConfigError, match="M=3 does not divide axis"):
        M.nm_mask(jnp.ones((4, 4)), 1, 3, path="w")
    with pytest.raises(ConfigError, match=r"block \(3, 3\) does not divide"):
        M.block_mask(jnp.ones((4, 4)), 0.5, (3, 3), path="w")
    with pytest.raises(ConfigError, match=r"mask 'w': shape \(3,\) differs.*\(4,\)"):
        M.apply_masks({"w": jnp.ones(4)}, {"w": jnp.ones(3, bool)})
    with pytest.raises(ConfigError, match="no parameter at that path"):
        M.apply_masks({"w": jnp.ones(4)}, {"v": jnp.ones(4, bool)})


def _ref_groups(arrays, groups, z):
    """numpy reference for smallest_k_groups: stable argsort per group."""
    out = [np.zeros(a.shape, bool) for a in arrays]
    for g in set(groups):
        members = [i for i, gi in enumerate(groups) if gi == g]
        flat = np.concatenate([np.asarray(arrays[i], np.float32).ravel() for i in members])
        # order_keys puts -0.0 below +0.0; mimic it with a secondary key
        neg_zero = (flat == 0) & np.signbit(flat)
        order = np.lexsort((np.arange(flat.size), ~neg_zero, flat))
        sel = np.zeros(flat.size, bool)
        sel[order[:int(np.clip(z[g], 0, flat.size))]] = True
        pos = 0
        for i in members:
            out[i] = sel[pos:pos + arrays[i].size].reshape(arrays[i].shape)
            pos += arrays[i].size
    return out


@pytest.mark.parametrize("use_jit", [True, False])
@pytest.mark.parametrize("seed", range(6))
def test_radix_select_groups_with_heavy_ties(use_jit, seed):
    from jaxcomp.prune.select_k import smallest_k_groups

    rng = np.random.default_rng(seed)
    num_arrays = int(rng.integers(1, 6))
    groups = tuple(int(g) for g in rng.integers(0, 3, num_arrays))
    groups = tuple(sorted(set(groups)).index(g) for g in groups)  # groups 0..G-1
    pool = np.array([-np.inf, -2.5, -0.0, 0.0, 1e-30, 0.5, 0.5, 3.0, np.inf], np.float32)
    arrays = [rng.choice(pool, size=tuple(rng.integers(1, 9, rng.integers(1, 3))))
              for _ in range(num_arrays)]
    sizes = [sum(a.size for a, g in zip(arrays, groups, strict=True) if g == gi)
             for gi in range(max(groups) + 1)]
    z = np.array([int(rng.integers(-1, s + 2)) for s in sizes], np.int32)  # out of range too
    fn = maybe_jit(lambda a, z: smallest_k_groups(a, groups, z), use_jit)
    got = fn([jnp.asarray(a) for a in arrays], jnp.asarray(z))
    for g_arr, r_arr in zip(got, _ref_groups(arrays, groups, z), strict=True):
        np.testing.assert_array_equal(np.asarray(g_arr), r_arr)


def test_radix_select_large_ties_across_digit_boundary():
    # 70000 equal keys plus a few distinct ones: the tie split needs a 17-bit index
    x = np.full(70000, 1.0, np.float32)
    x[[5, 50000, 69999]] = [0.5, 2.0, 0.25]
    for z in (1, 2, 3, 40000, 69998, 70000):
        (m,) = smallest_k([jnp.asarray(x)], z)
        np.testing.assert_array_equal(np.asarray(m), ref_prune(x, z))


def test_vmap_over_counts_with_ties():
    from jaxcomp.prune.select_k import smallest_k_groups

    x = jnp.asarray(np.repeat(np.arange(5, dtype=np.float32), 7))
    zs = jnp.array([[0], [3], [7], [20], [35]], jnp.int32)
    out = jax.vmap(lambda z: smallest_k_groups([x], (0,), z)[0])(zs)
    for row, z in zip(np.asarray(out), np.asarray(zs)[:, 0], strict=True):
        np.testing.assert_array_equal(row, ref_prune(np.asarray(x), int(z)))
