"""decompose_reconstruct through the conformance suite, its numerics and its errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcomp.core.errors import ConfigError
from jaxcomp.decompose import decompose_reconstruct, tucker2, tucker2_reconstruct
from jaxcomp.decompose.blas import one_blas_thread
from tests import conformance


@pytest.fixture(autouse=True)
def _one_blas_thread():
    with one_blas_thread():
        yield


def _conv_params(seed=0):
    k = jax.random.split(jax.random.key(seed), 2)
    return {"Conv_0": {"kernel": jax.random.normal(k[0], (3, 3, 4, 6)), "bias": jnp.zeros(6)},
            "Conv_1": {"kernel": jax.random.normal(k[1], (3, 3, 6, 8)), "bias": jnp.zeros(8)}}


def test_svd_conformance():
    conformance.check_transform(lambda: decompose_reconstruct("svd", rank=4))


def test_cp_conformance():
    conformance.check_transform(
        lambda: decompose_reconstruct("cp", rank=3, n_iter=4, key=jax.random.key(0)),
        param_sets=("linen",))


def test_tucker2_conformance_on_conv_params(monkeypatch):
    monkeypatch.setitem(conformance.PARAM_SETS, "conv", _conv_params)
    conformance.check_transform(
        lambda: decompose_reconstruct("tucker2", rank=(2, 3), where=".*/kernel", n_iter=3),
        param_sets=("conv",))


@pytest.mark.parametrize("use_jit", [True, False])
def test_apply_equals_truncated_svd_and_tucker2(use_jit):
    params = conformance.linen_params()
    t = decompose_reconstruct("svd", rank=[("Dense_0/kernel", 3), (".*", 5)])
    apply = jax.jit(t.apply) if use_jit else t.apply
    out = apply(params, t.init(params))
    for path, r in (("Dense_0", 3), ("Dense_1", 5)):
        w = np.asarray(params[path]["kernel"], np.float64)
        u, s, vt = np.linalg.svd(w, full_matrices=False)
        np.testing.assert_allclose(out[path]["kernel"], (u[:, :r] * s[:r]) @ vt[:r], atol=1e-5)
    np.testing.assert_array_equal(out["Dense_0"]["bias"], params["Dense_0"]["bias"])
    cparams = _conv_params()
    tt = decompose_reconstruct("tucker2", rank=2, n_iter=3)
    capply = jax.jit(tt.apply) if use_jit else tt.apply
    cout = capply(cparams, tt.init(cparams))
    ref = tucker2_reconstruct(tucker2(cparams["Conv_1"]["kernel"], (2, 2), n_iter=3))
    np.testing.assert_allclose(cout["Conv_1"]["kernel"], ref, atol=1e-4)


def test_gradients_flow_through_apply_and_update_refreshes():
    params = conformance.linen_params()
    t = decompose_reconstruct("svd", rank=2, where="Dense_0/kernel", every=2)
    state = t.init(params)
    g = jax.grad(lambda p: jnp.sum(t.apply(p, state)["Dense_0"]["kernel"] ** 2))(params)
    assert float(jnp.abs(g["Dense_0"]["kernel"]).sum()) > 0
    new = jax.tree.map(lambda x: x * 0 + 1.0, params)        # rank-1 kernels
    kept = t.update(new, state, step=jnp.asarray(1))
    np.testing.assert_array_equal(kept["Dense_0/kernel"], state["Dense_0/kernel"])
    fresh = t.update(new, state, step=jnp.asarray(2))
    out = t.apply(new, fresh)
    np.testing.assert_allclose(out["Dense_0"]["kernel"], new["Dense_0"]["kernel"], atol=1e-5)


def test_errors_name_the_path():
    params = conformance.linen_params()
    with pytest.raises(ConfigError, match=r"Dense_0/kernel: rank got 17; allowed range \[1, 16"):
        decompose_reconstruct("svd", rank=17).init(params)
    with pytest.raises(ConfigError, match=r"Dense_1/kernel: rank got 0"):
        decompose_reconstruct("svd", rank=0, where="Dense_1/kernel").init(params)
    with pytest.raises(ConfigError, match=r"Dense_0/kernel: Tucker-2 needs a 4-D kernel"):
        decompose_reconstruct("tucker2", rank=2).init(params)
    with pytest.raises(ConfigError, match=r"decompose.method: got 'pca'"):
        decompose_reconstruct("pca")
    with pytest.raises(ConfigError, match=r"decompose.key"):
        decompose_reconstruct("cp", rank=2)
    with pytest.raises(ConfigError, match=r"where: rule 'Conv_0/kernel' matches no"):
        decompose_reconstruct("svd", rank=2, where="Conv_0/kernel").init(params)
