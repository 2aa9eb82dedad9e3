"""One-shot pruning per layer: SparseGPT against a plain numpy reference, Wanda's
orientation by hand, magnitude counts, jit and non-jit, bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcomp.core.errors import ConfigError
from jaxcomp.prune.oneshot import magnitude, sparsegpt, wanda
from jaxcomp.quant.calib import hessian_of
from tests.sparsegpt_ref import sparsegpt_ref


def _data(n_in=80, n_out=24, tokens=600, seed=0):
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    mix = jax.random.normal(k3, (n_in, n_in)) * 0.3 + jnp.eye(n_in)   # correlated inputs
    x = jax.random.normal(k1, (tokens, n_in)) @ mix
    return x, jax.random.normal(k2, (n_in, n_out))


@pytest.mark.parametrize("kw", [dict(sparsity=0.5), dict(sparsity=0.3), dict(nm=(2, 4)),
                                dict(nm="4:8")])
def test_sparsegpt_matches_the_row_by_row_numpy_reference(kw):
    x, w = _data()                      # 80 inputs, blocks of 32: a padded last block
    h = hessian_of(x)
    ws, keep = sparsegpt(w, h, block_size=32, **kw)
    nm = kw.get("nm")
    wr, kr = sparsegpt_ref(np.asarray(w), np.asarray(h), sparsity=kw.get("sparsity"),
                           nm=(4, 8) if nm == "4:8" else nm, block_size=32)
    np.testing.assert_array_equal(np.asarray(keep), kr)
    np.testing.assert_allclose(np.asarray(ws), wr, atol=2e-5, rtol=1e-4)
    assert bool(jnp.all(ws[~keep] == 0))
    s = kw.get("sparsity", 0.5)
    assert abs(float(1 - keep.mean()) - s) < 3 / keep.size   # exact count per block, rounded
    if nm:
        n, m = (4, 8) if nm == "4:8" else nm
        assert (np.asarray(keep).reshape(80 // m, m, 24).sum(1) == n).all()


def test_sparsegpt_jit_traced_sparsity_and_no_jit_agree():
    x, w = _data(n_in=16, n_out=4, tokens=100)
    h = hessian_of(x)
    ws, keep = sparsegpt(w, h, sparsity=0.5, block_size=8)
    jitted = jax.jit(lambda w, h, s: sparsegpt(w, h, sparsity=s, block_size=8))
    wj, kj = jitted(w, h, jnp.float32(0.5))
    with jax.disable_jit():
        wn, kn = sparsegpt(w, h, sparsity=0.5, block_size=8)
    np.testing.assert_array_equal(np.asarray(kj), np.asarray(keep))
    np.testing.assert_array_equal(np.asarray(kn), np.asarray(keep))
    np.testing.assert_allclose(np.asarray(wj), np.asarray(ws), atol=1e-6)
    np.testing.assert_allclose(np.asarray(wn), np.asarray(ws), atol=1e-5)


def test_sparsegpt_beats_wanda_beats_magnitude_on_correlated_inputs():
    # LLM-like inputs: a shared low-rank part (correlation) and per-feature scales (outliers)
    k1, k2, k3, k4 = jax.random.split(jax.random.key(0), 4)
    z = jax.random.normal(k1, (1024, 64)) + jax.random.normal(k3, (1024, 8)) @ \
        jax.random.normal(k4, (8, 64))
    x = z * jnp.exp(jax.random.normal(jax.random.fold_in(k1, 1), (64,)))
    w = jax.random.normal(k2, (64, 32))
    h, xn = hessian_of(x), jnp.linalg.norm(x, axis=0)
    for kw in (dict(sparsity=0.5), dict(nm="2:4")):
        err = {name: float(jnp.linalg.norm(x @ (w - f(**kw)[0])))
               for name, f in (("mag", lambda **k: magnitude(w, **k)),
                               ("wanda", lambda **k: wanda(w, xn, **k)),
                               ("sgpt", lambda **k: sparsegpt(w, h, **k)))}
        assert err["sgpt"] < 0.8 * err["wanda"] < 0.8 * err["mag"], (kw, err)


def test_sparsegpt_dead_inputs_are_zeroed_and_pruned_first():
    x, w = _data(n_in=16, n_out=4, tokens=100)
    x = x.at[:, 3].set(0.0)
    ws, keep = sparsegpt(w, hessian_of(x), sparsity=0.25)
    assert bool(jnp.all(ws[3] == 0)) and not bool(keep[3].any())


def test_wanda_compares_per_output_column_of_a_flax_kernel():
    # kernel (in=4, out=2); input 0 has a huge norm, so its weights survive though small
    w = jnp.array([[0.1, -0.2], [1.0, 3.0], [2.0, 0.5], [-3.0, 1.0]])
    xn = jnp.array([100.0, 1.0, 1.0, 1.0])
    _, keep = wanda(w, xn, sparsity=0.5)
    # scores per output column: col 0 = [10, 1, 2, 3] -> keep inputs 0, 3;
    #                           col 1 = [20, 3, .5, 1] -> keep inputs 0, 1
    assert keep.astype(int).tolist() == [[1, 1], [0, 1], [0, 0], [1, 0]]
    assert keep.sum(0).tolist() == [2, 2]   # the same count in every output column
    # numpy check on a random kernel: per row of W = w.T, the paper's orientation
    rng = np.random.default_rng(0)
    w = rng.normal(size=(32, 12)).astype(np.float32)
    xn = rng.uniform(0.1, 5, 32).astype(np.float32)
    ws, keep = jax.jit(lambda w, xn: wanda(w, xn, sparsity=0.25))(w, xn)
    sc = np.abs(w.T) * xn[None, :]                               # (out, in)
    ref = np.ones_like(sc, bool)
    np.put_along_axis(ref, np.argsort(sc, axis=1, kind="stable")[:, :8], False, axis=1)
    np.testing.assert_array_equal(np.asarray(keep), ref.T)
    np.testing.assert_array_equal(np.asarray(ws), np.where(ref.T, w, 0))


def test_wanda_and_magnitude_nm_groups_run_along_the_input_dimension():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(16, 6)).astype(np.float32)
    for f in (lambda nm: magnitude(w, nm=nm), lambda nm: wanda(w, jnp.ones(16), nm=nm)):
        for nm, (n, m) in (("2:4", (2, 4)), ("4:8", (4, 8))):
            ws, keep = f(nm)
            g = np.asarray(keep).reshape(16 // m, m, 6)
            assert (g.sum(1) == n).all()
            big = np.argsort(-np.abs(w).reshape(16 // m, m, 6), axis=1, kind="stable")[:, :n]
            assert np.take_along_axis(g, big, 1).all()


def test_magnitude_unstructured_is_layerwise_with_exact_count():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(10, 7)).astype(np.float32)
    ws, keep = magnitude(w, sparsity=0.4)
    assert int((~keep).sum()) == 28
    assert np.abs(w)[~np.asarray(keep)].max() <= np.abs(w)[np.asarray(keep)].min()


@pytest.mark.parametrize("call,words", [
    (lambda w, h: sparsegpt(w, h, nm="2:4", path="blocks/0/mlp/down/kernel"),
     ["blocks/0/mlp/down/kernel", "M=4", "does not divide", "18", "allowed M"]),
    (lambda w, h: sparsegpt(w, h, sparsity=1.0, path="attn/q"), ["attn/q", "sparsity", "1.0",
                                                                  "[0, 1)"]),
    (lambda w, h: wanda(w, jnp.ones(18), sparsity=-0.1, path="L"), ["L", "-0.1", "[0, 1)"]),
    (lambda w, h: magnitude(w, nm="4:2", path="L"), ["L", "4:2", "0 < N < M"]),
    (lambda w, h: magnitude(w, sparsity=0.5, nm="2:4", path="L"), ["L", "both"]),
    (lambda w, h: sparsegpt(w, h[:4, :4], sparsity=0.5, path="L"), ["L", "(18, 18)", "(4, 4)"]),
    (lambda w, h: wanda(w, jnp.ones(5), sparsity=0.5, path="L"), ["L", "(18,)", "(5,)"]),
    (lambda w, h: sparsegpt(w, jnp.zeros((18, 18)) - jnp.eye(18), sparsity=0.5, damp=0.0,
                            path="L"), ["L", "singular", "damp"]),
])
def test_bad_input_names_layer_value_and_allowed(call, words):
    w = jnp.ones((18, 4))
    with pytest.raises(ConfigError) as e:
        call(w, hessian_of(jnp.ones((30, 18))))
    for word in words:
        assert word in str(e.value), (word, str(e.value))
