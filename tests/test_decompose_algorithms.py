"""SVD / Tucker-2 / CP / TT-matrix numerics against numpy and tensorly (numpy backend)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorly as tl
from tensorly.decomposition import parafac, partial_tucker, tensor_train_matrix

from jaxcomp.core.errors import ConfigError
from jaxcomp.decompose import (
    cp_als,
    cp_reconstruct,
    lowrank_factors,
    randomized_svd,
    relative_error,
    svd_reconstruct,
    truncated_svd,
    tt_matrix,
    tt_matrix_reconstruct,
    tucker2,
    tucker2_reconstruct,
)
from jaxcomp.decompose.blas import one_blas_thread
from jaxcomp.decompose.cp import svd_init
from jaxcomp.decompose.tucker import tucker2_project

tl.set_backend("numpy")


@pytest.fixture(autouse=True)
def _one_blas_thread():
    with one_blas_thread():
        yield


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def _maybe_jit(fn, use_jit, **static):
    return jax.jit(fn, static_argnames=tuple(static)) if use_jit else fn


@pytest.mark.parametrize("use_jit", [True, False])
def test_truncated_svd_is_eckart_young(use_jit):
    w = np.random.default_rng(0).normal(size=(20, 12)).astype(np.float32)
    fn = jax.jit(truncated_svd, static_argnums=1) if use_jit else truncated_svd
    f = fn(w, 5)
    u, s, vt = np.linalg.svd(w.astype(np.float64), full_matrices=False)
    ref = (u[:, :5] * s[:5]) @ vt[:5]
    np.testing.assert_allclose(svd_reconstruct(f), ref, atol=2e-5)
    a, b = lowrank_factors(f)
    assert a.shape == (20, 5) and b.shape == (5, 12)
    np.testing.assert_allclose(a @ b, ref, atol=2e-5)
    # the optimal error is the dropped spectrum
    np.testing.assert_allclose(_rel(svd_reconstruct(f), w),
                               np.sqrt((s[5:] ** 2).sum() / (s ** 2).sum()), rtol=1e-4)


@pytest.mark.parametrize("use_jit", [True, False])
def test_randomized_svd_matches_truncated_on_decaying_spectrum(use_jit):
    rng = np.random.default_rng(1)
    q1, _ = np.linalg.qr(rng.normal(size=(120, 40)))
    q2, _ = np.linalg.qr(rng.normal(size=(90, 40)))
    w = (q1 * 0.7 ** np.arange(40)) @ q2.T
    fn = jax.jit(randomized_svd, static_argnums=1) if use_jit else randomized_svd
    f = fn(w.astype(np.float32), 8, key=jax.random.key(0))
    exact = svd_reconstruct(truncated_svd(w, 8))
    assert _rel(svd_reconstruct(f), w) <= _rel(exact, w) * 1.01 + 1e-6
    np.testing.assert_allclose(f.s, 0.7 ** np.arange(8), rtol=1e-3)


@pytest.mark.parametrize("shape,ranks", [((3, 3, 16, 32), (6, 10)), ((5, 5, 6, 16), (3, 6))])
@pytest.mark.parametrize("use_jit", [True, False])
def test_tucker2_vs_tensorly(shape, ranks, use_jit):
    k = np.random.default_rng(2).normal(size=shape).astype(np.float32)
    fn = jax.jit(tucker2, static_argnums=1, static_argnames="n_iter") if use_jit else tucker2
    t = fn(k, ranks, n_iter=5)
    ours = _rel(tucker2_reconstruct(t), k)
    (core, factors), _ = partial_tucker(k.astype(np.float64), rank=list(ranks), modes=[2, 3],
                                        n_iter_max=5, tol=0)
    theirs = _rel(tl.tenalg.multi_mode_dot(core, factors, modes=[2, 3]), k)
    assert ours <= theirs * 1.01 + 1e-6
    np.testing.assert_allclose(np.asarray(t.u_in).T @ np.asarray(t.u_in), np.eye(ranks[0]),
                               atol=1e-5)
    np.testing.assert_allclose(tucker2_project(jnp.asarray(k), t.u_in, t.u_out),
                               tucker2_reconstruct(t), atol=1e-4)
    assert float(relative_error(tucker2_reconstruct(t), k)) == pytest.approx(ours, rel=1e-4)


def test_tucker2_full_rank_is_exact_and_hooi_does_not_hurt():
    k = np.random.default_rng(3).normal(size=(3, 3, 8, 12)).astype(np.float32)
    np.testing.assert_allclose(tucker2_reconstruct(tucker2(k, (8, 12))), k, atol=1e-4)
    e0 = _rel(tucker2_reconstruct(tucker2(k, (3, 4), n_iter=0)), k)
    e10 = _rel(tucker2_reconstruct(tucker2(k, (3, 4), n_iter=10)), k)
    assert e10 <= e0 + 1e-6


@pytest.mark.parametrize("use_jit", [True, False])
def test_cp_als_vs_tensorly_same_init(use_jit):
    k = np.random.default_rng(4).normal(size=(3, 3, 8, 12)).astype(np.float32)
    rank, iters = 10, 25
    init = [np.asarray(f) for f in svd_init(jnp.asarray(k), rank, jax.random.key(0))]
    fn = jax.jit(cp_als, static_argnums=1, static_argnames="n_iter") if use_jit else cp_als
    d = fn(k, rank, n_iter=iters, init=init)
    ours = _rel(cp_reconstruct(d), k)
    cpt = parafac(k.astype(np.float64), rank, n_iter_max=iters, tol=0,
                  init=tl.cp_tensor.CPTensor((np.ones(rank),
                                              [f.astype(np.float64) for f in init])))
    theirs = _rel(tl.cp_to_tensor(cpt), k)
    assert ours <= theirs * 1.01 + 1e-6
    # the convergence report is the error of the returned factors, and never grows
    assert d.errors.shape == (iters,)
    assert float(d.errors[-1]) == pytest.approx(ours, rel=1e-3)
    assert np.all(np.diff(np.asarray(d.errors)) <= 1e-5)


def test_cp_recovers_exact_low_rank_tensor():
    rng = np.random.default_rng(5)
    fs = [rng.normal(size=(n, 3)) for n in (4, 5, 6)]
    x = np.einsum("ar,br,cr->abc", *fs).astype(np.float32)
    d = cp_als(x, 3, n_iter=60, key=jax.random.key(1))
    assert _rel(cp_reconstruct(d), x) < 1e-3


@pytest.mark.parametrize("use_jit", [True, False])
def test_tt_matrix_vs_tensorly(use_jit):
    w = np.random.default_rng(6).normal(size=(64, 48)).astype(np.float32)
    fn = jax.jit(tt_matrix, static_argnums=(1, 2, 3)) if use_jit else tt_matrix
    cores = fn(w, (4, 4, 4), (4, 4, 3), 8)
    assert [c.shape for c in cores] == [(1, 4, 4, 8), (8, 4, 4, 8), (8, 4, 3, 1)]
    ref = tensor_train_matrix(w.reshape(4, 4, 4, 4, 4, 3).astype(np.float64), [1, 8, 8, 1])
    theirs = _rel(tl.tt_matrix_to_tensor(ref).reshape(64, 48), w)
    assert _rel(tt_matrix_reconstruct(cores), w) <= theirs * 1.01 + 1e-6
    full = tt_matrix(w, (4, 4, 4), (4, 4, 3), 1000)      # clipped to the maximal ranks
    np.testing.assert_allclose(tt_matrix_reconstruct(full), w, atol=1e-4)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("name, call", [
    ("truncated_svd", lambda w: truncated_svd(w[:, :, 0, 0], 2, what="Dense_0/kernel")),
    ("randomized_svd", lambda w: randomized_svd(w[:, :, 0, 0], 2, key=jax.random.key(0),
                                                what="Dense_0/kernel")),
    ("tucker2", lambda w: tucker2(w, (2, 2), what="Conv_0/kernel")),
    ("cp_als", lambda w: cp_als(w, 2, key=jax.random.key(0), what="Conv_0/kernel")),
])
def test_non_finite_weights_are_refused_naming_the_layer(name, call, bad):
    w = np.ones((6, 6, 3, 3), np.float32)
    w[1, 2, 0, 0] = bad
    with pytest.raises(ConfigError, match=r"kernel: has 1 NaN/inf value\(s\)"):
        call(jnp.asarray(w))
