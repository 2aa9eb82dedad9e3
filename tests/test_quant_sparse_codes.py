"""Sparse integer codes (bitmask + non-zero codes) hold exactly the dense export's
codes, are chosen only where smaller, survive save/restore, and run the integer
model to the same outputs (eager and jit)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxcomp.data import digits
from jaxcomp.models import get_model
from jaxcomp.quant.act import act_quant
from jaxcomp.quant.export import (
    codes,
    dequantize_tree,
    dir_bytes,
    export_int,
    int_bytes,
    restore,
    save,
)
from jaxcomp.quant.intinfer import int_model
from jaxcomp.quant.sparse_codes import dense_bytes, is_sparse, sparse_bytes, sparsify
from jaxcomp.train import fit


def _pruned(shape, sparsity, seed):
    w = np.array(jax.random.normal(jax.random.key(seed), shape), np.float32)
    k = int(round(sparsity * w.size))
    if k:
        w.reshape(-1)[np.argsort(np.abs(w).reshape(-1), kind="stable")[:k]] = 0.0
    return w


@settings(max_examples=30, deadline=None)
@given(bits=st.integers(2, 8), sparsity=st.sampled_from([0.0, 0.3, 0.9, 0.99, 1.0]),
       rows=st.integers(1, 40), cols=st.integers(1, 9), seed=st.integers(0, 10**6))
def test_sparse_codes_equal_dense_codes_and_are_chosen_only_where_smaller(
        bits, sparsity, rows, cols, seed):
    w = _pruned((rows, cols), sparsity, seed)
    dense = export_int({"d": {"kernel": w}}, bits)
    sp = export_int({"d": {"kernel": w}}, bits, sparse=True)
    q = np.asarray(codes(dense["d"]["kernel"]))
    np.testing.assert_array_equal(codes(sp["d"]["kernel"]), q)
    np.testing.assert_array_equal(dequantize_tree(sp)["d"]["kernel"],
                                  dequantize_tree(dense)["d"]["kernel"])
    smaller = sparse_bytes(q.size, int(np.count_nonzero(q)), bits) < dense_bytes(q.size, bits)
    assert is_sparse(sp["d"]["kernel"]) == smaller
    if smaller:  # the hand count: ceil(n/8) mask bytes + the non-zero codes
        nnz = int(np.count_nonzero(q))
        want = -(-q.size // 8) + (-(-nnz // 2) if bits <= 4 else nnz)
        leaf = sp["d"]["kernel"]
        assert leaf["mask"].nbytes + leaf["q"].nbytes == want


def test_asymmetric_and_float_leaves_are_kept():
    w = _pruned((32, 8), 0.9, 0)
    qt = export_int({"d": {"kernel": w, "bias": np.zeros(8, np.float32)}}, 8,
                    symmetric=False)
    out = sparsify(qt)
    assert not is_sparse(out["d"]["kernel"]) and out["d"]["bias"] is qt["d"]["bias"]


def test_sparse_export_saves_restores_and_is_smaller_at_rest(tmp_path):
    params = {"a": {"kernel": _pruned((300, 100), 0.9, 1), "bias": np.ones(100, np.float32)},
              "b": {"kernel": _pruned((100, 10), 0.0, 2), "bias": np.ones(10, np.float32)}}
    dense, sp = export_int(params, 8), export_int(params, 8, sparse=True)
    assert is_sparse(sp["a"]["kernel"]) and not is_sparse(sp["b"]["kernel"])
    assert int_bytes(sp) < 0.3 * int_bytes(dense)
    save(str(tmp_path / "dense"), dense)
    save(str(tmp_path / "sparse"), sp)
    back = restore(str(tmp_path / "sparse"))
    np.testing.assert_array_equal(codes(back["a"]["kernel"]), codes(dense["a"]["kernel"]))
    np.testing.assert_array_equal(dequantize_tree(back)["b"]["kernel"],
                                  dequantize_tree(dense)["b"]["kernel"])
    assert dir_bytes(str(tmp_path / "sparse")) < dir_bytes(str(tmp_path / "dense"))


@pytest.mark.parametrize("bits", [8, 4])
def test_int_model_from_sparse_export_matches_dense(bits):
    ds = digits()
    base = get_model("mlp", input_shape=ds.input_shape, num_classes=10, features=(32,))
    res = fit(base, ds, optax.adam(3e-3), epochs=2, batch_size=64, seed=0, progress=False)
    params = jax.tree.map(np.array, res.state.params)
    k = params["Dense_0"]["kernel"]
    k[np.abs(k) < np.quantile(np.abs(k), 0.8)] = 0.0  # prune 80% of the first layer
    aq = act_quant(base, ["Dense_.*"], bits=8)
    _, ms = aq.model.init(jax.random.key(0), ds.x_train[:1])
    ms = aq.calibrate(params, ms, [ds.x_train[:256]])
    sp = export_int(params, bits, sparse=True)
    assert is_sparse(sp["Dense_0"]["kernel"])
    dense_model = int_model(base, export_int(params, bits), ms["act_quant"])
    sparse_model = int_model(base, sp, ms["act_quant"])
    x = ds.x_test[:128]
    want, _ = dense_model.apply(None, {}, x)
    got, _ = sparse_model.apply(None, {}, x)
    got_jit, _ = jax.jit(sparse_model.apply)(None, {}, x)
    # the integer accumulators are equal; the float rescale may round an ulp apart
    for y in (got, got_jit):
        np.testing.assert_allclose(np.asarray(y), np.asarray(want), rtol=1e-5, atol=1e-6)
        assert bool(jnp.all(jnp.argmax(y, -1) == jnp.argmax(want, -1)))
