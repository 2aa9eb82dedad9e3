"""k-means weight sharing: numerics against a numpy reference, the Transform's
conformance, centroid fine-tuning by summed gradients, and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcomp.core.errors import ConfigError
from jaxcomp.quant import kmeans as km
from jaxcomp.quant.sharing import codebooks, shared_params, weight_sharing
from tests.conformance import check_transform, linen_params


def np_kmeans(x, mask, c0, iters):
    """Plain numpy Lloyd's algorithm: argmin assignment, empty clusters keep their value."""
    x = np.asarray(x, np.float64).ravel()
    mask = np.asarray(mask).ravel()
    c = np.sort(np.asarray(c0, np.float64))
    xs = x[mask]
    for _ in range(iters):
        a = np.argmin(np.abs(xs[:, None] - c[None, :]), axis=1)
        for j in range(len(c)):
            if (a == j).any():
                c[j] = xs[a == j].mean()
    idx = np.full(x.shape, -1)
    idx[mask] = np.argmin(np.abs(xs[:, None] - c[None, :]), axis=1)
    return c, idx


def sparse_weights(seed, n=600, keep=0.3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n).astype(np.float32)
    x[rng.random(n) > keep] = 0.0
    return x


@pytest.mark.parametrize("use_jit", [False, True])
@pytest.mark.parametrize("init", ["linear", "density", "random"])
def test_kmeans_matches_numpy_reference(use_jit, init):
    x = sparse_weights(1)
    mask = x != 0
    key = jax.random.key(3)
    c0 = km.init_centroids(jnp.asarray(x), jnp.asarray(mask), 8, init, key)
    fn = (jax.jit(lambda x, m: km.kmeans1d(x, m, k=8, init=init, iters=15, key=key))
          if use_jit else (lambda x, m: km.kmeans1d(x, m, k=8, init=init, iters=15, key=key)))
    c, idx = fn(jnp.asarray(x), jnp.asarray(mask))
    c_ref, idx_ref = np_kmeans(x, mask, c0, 15)
    np.testing.assert_allclose(np.asarray(c), c_ref, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(idx), idx_ref)


def test_pruned_zeros_get_no_centroid():
    x = sparse_weights(2)
    c, idx = km.kmeans1d(jnp.asarray(x), k=4, iters=5)
    assert (np.asarray(idx)[x == 0] == -1).all()
    assert (np.asarray(idx)[x != 0] >= 0).all()
    # Zeros do not pull any centroid: the same as clustering only the non-zeros.
    nz = x[x != 0]
    c_nz, idx_nz = km.kmeans1d(jnp.asarray(nz), jnp.ones(nz.shape, bool), k=4, iters=5,
                               centroids=km.linear_init(jnp.asarray(x), jnp.asarray(x != 0), 4))
    np.testing.assert_allclose(c, c_nz, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(idx)[x != 0], idx_nz)
    np.testing.assert_array_equal(np.asarray(km.reconstruct(c, idx))[x == 0], 0.0)


def test_linear_init_evenly_spaced():
    x = sparse_weights(3)
    nz = x[x != 0]
    c = np.asarray(km.linear_init(jnp.asarray(x), jnp.asarray(x != 0), 6))
    np.testing.assert_allclose(c, np.linspace(nz.min(), nz.max(), 6), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.diff(c), np.full(5, (nz.max() - nz.min()) / 5), rtol=1e-5)


def test_density_init_is_quantiles():
    x = sparse_weights(4)
    nz = x[x != 0]
    c = np.asarray(km.density_init(jnp.asarray(x), jnp.asarray(x != 0), 5))
    np.testing.assert_allclose(c, np.quantile(nz, (np.arange(5) + 0.5) / 5), atol=1e-5)


def test_random_init_draws_distinct_nonzero_weights_and_depends_on_key():
    x = sparse_weights(5)
    a = np.asarray(km.random_init(jnp.asarray(x), jnp.asarray(x != 0), 8, jax.random.key(0)))
    b = np.asarray(km.random_init(jnp.asarray(x), jnp.asarray(x != 0), 8, jax.random.key(1)))
    assert len(set(a.tolist())) == 8 and set(a.tolist()) <= set(x[x != 0].tolist())
    assert not np.array_equal(a, b)


def test_assign_sorted_equals_argmin():
    x = jnp.asarray(np.random.default_rng(6).normal(size=1000).astype(np.float32))
    c = jnp.sort(jnp.asarray(np.random.default_rng(7).normal(size=33).astype(np.float32)))
    np.testing.assert_array_equal(km.assign_sorted(x, c), km.assign(x, c))


def test_sharing_conforms():
    check_transform(lambda: weight_sharing(bits=3, init="linear"))


def test_sharing_random_init_custom_optimizer_lr_vmap_conform():
    check_transform(lambda: weight_sharing(k=5, init="random", key=jax.random.key(0),
                                           optimizer=optax.adam(1e-2)),
                    hparam_factory=lambda lr: weight_sharing(bits=2, learning_rate=lr),
                    hparam_values=[0.0, 1.0], param_sets=("linen",))


@pytest.mark.parametrize("use_jit", [False, True])
def test_centroid_gradient_is_sum_of_member_gradients(use_jit):
    params = linen_params()
    params = jax.tree.map(lambda x: jnp.where(jnp.abs(x) > 0.1, x, 0.0), params)
    t = weight_sharing(bits=3, learning_rate=0.1, where=[".*/kernel"])
    s0 = t.init(params)
    grads = jax.tree.map(lambda x: jax.random.normal(jax.random.key(1), x.shape), params)
    upd = jax.jit(t.update) if use_jit else t.update
    s1 = upd(params, s0, step=jnp.asarray(0), grads=grads)
    for path, (c0, idx) in codebooks(s0).items():
        g = np.asarray(grads[path.split("/")[0]]["kernel"])
        idx = np.asarray(idx)
        want = np.array([g[idx == j].sum() for j in range(len(c0))])
        np.testing.assert_allclose(s1["layers"][path]["centroids"], np.asarray(c0) - 0.1 * want,
                                   atol=1e-5)
        np.testing.assert_array_equal(s1["layers"][path]["index"], idx)


def test_apply_is_exact_and_passes_gradients_straight_through():
    params = linen_params()
    t = weight_sharing(bits=2, where=[".*/kernel"])
    s = t.init(params)
    out = t.apply(params, s)
    np.testing.assert_array_equal(out["Dense_0"]["kernel"],
                                  shared_params(params, s)["Dense_0"]["kernel"])
    assert len(np.unique(np.asarray(out["Dense_0"]["kernel"]))) <= 4
    np.testing.assert_array_equal(out["Dense_0"]["bias"], params["Dense_0"]["bias"])
    g = jax.grad(lambda p: jnp.sum(3.0 * t.apply(p, s)["Dense_1"]["kernel"]))(params)
    np.testing.assert_allclose(g["Dense_1"]["kernel"], 3.0)


def test_finetuning_reduces_a_loss():
    """Training only the centroids through fit-style steps lowers a regression loss."""
    rng = np.random.default_rng(0)
    w_true = rng.normal(size=(8, 4)).astype(np.float32)
    x = rng.normal(size=(64, 8)).astype(np.float32)
    y = x @ w_true
    params = {"w": jnp.asarray(w_true + 0.3 * rng.normal(size=w_true.shape), jnp.float32)}
    t = weight_sharing(k=6, where=["w"], learning_rate=2e-3)
    s = t.init(params)

    def loss(p, s):
        return jnp.mean((x @ t.apply(p, s)["w"] - y) ** 2)

    @jax.jit
    def step(s, i):
        return t.update(params, s, step=i, grads=jax.grad(loss)(params, s))

    l0 = float(loss(params, s))
    for i in range(50):
        s = step(s, jnp.asarray(i))
    assert float(loss(params, s)) < 0.9 * l0


def test_bad_input():
    params = {"w": jnp.ones((2, 3))}
    with pytest.raises(ConfigError, match=r"sharing.bits: got 9; allowed: 1, 2"):
        weight_sharing(bits=9)
    with pytest.raises(ConfigError, match=r"sharing.k\[w\]: got 1; allowed range \[2, 6\]"):
        weight_sharing(k=1, where=["w"]).init(params)
    with pytest.raises(ConfigError, match=r"sharing.k\[w\]: got 7; allowed range \[2, 6\]"):
        weight_sharing(k=7, where=["w"]).init(params)
    with pytest.raises(ConfigError, match=r"sharing.k\[w\]: got 8; allowed range \[2, 6\]"):
        weight_sharing(bits=3, where=["w"]).init(params)
    with pytest.raises(ConfigError, match="exactly one of bits= or k="):
        weight_sharing(where=["w"]).init(params)
    with pytest.raises(ConfigError, match="sharing.init: got 'kmeans\\+\\+'"):
        weight_sharing(bits=2, init="kmeans++")
    with pytest.raises(ConfigError, match="sharing.key"):
        weight_sharing(bits=2, init="random")
    with pytest.raises(ConfigError, match="matches no parameter path"):
        weight_sharing(bits=1, where=["Dense_9/kernel"]).init(params)
    with pytest.raises(ConfigError, match=r"sharing.k: got 1; allowed range \[2, 5\]"):
        km.kmeans1d(jnp.ones(5), k=1)
