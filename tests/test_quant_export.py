"""Integer export (int8/int4 packed, orbax) and the integer inference path."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcomp.core.errors import ConfigError
from jaxcomp.data import digits, synthetic
from jaxcomp.models import get_model
from jaxcomp.quant import quantize
from jaxcomp.quant.act import act_quant
from jaxcomp.quant.bnfold import fold_batchnorm
from jaxcomp.quant.export import (
    codes,
    dequantize_tree,
    dir_bytes,
    export_int,
    pack_int4,
    restore,
    save,
    unpack_int4,
    zero_point,
)
from jaxcomp.quant.intinfer import int_model
from jaxcomp.quant.transform import fake_quant_params
from jaxcomp.train import fit


@pytest.mark.parametrize("bits,sym,axis", [(8, True, -1), (4, True, -1), (8, False, None),
                                           (3, False, 0)])
def test_export_codes_equal_quantize(bits, sym, axis):
    w = np.asarray(jax.random.normal(jax.random.key(bits), (37, 11)), np.float32)
    qt = export_int({"d": {"kernel": w}}, bits, per_channel=axis is not None,
                    axis=axis if axis is not None else -1, symmetric=sym)
    leaf = qt["d"]["kernel"]
    q, s, z = quantize(jnp.asarray(w), bits, axis=axis, symmetric=sym)
    # XLA's division may differ from itself by an ulp between eager and jit, so a code
    # can flip at an exact tie; anything beyond that is a bug
    diff = np.abs(codes(leaf).astype(int) - np.asarray(q, int))
    assert diff.max() <= 1 and diff.mean() < 1e-2
    np.testing.assert_allclose(leaf["scale"], s, rtol=1e-6)
    np.testing.assert_array_equal(zero_point(leaf), z if not sym else 0)
    assert ("zero_point" in leaf) == (not sym)
    assert leaf["q"].dtype == (np.uint8 if bits <= 4 else np.int8)


def test_int4_pack_roundtrip_numpy_and_jit():
    q = np.asarray(jax.random.randint(jax.random.key(0), (5, 7), -8, 8), np.int8)
    p = pack_int4(q)
    assert p.shape == (18,) and p.dtype == np.uint8
    np.testing.assert_array_equal(unpack_int4(p, q.shape), q)
    np.testing.assert_array_equal(jax.jit(lambda b: unpack_int4(b, (5, 7)))(jnp.asarray(p)), q)


def test_orbax_roundtrip_and_bytes(tmp_path):
    params = {f"Dense_{i}": {"kernel": np.asarray(jax.random.normal(jax.random.key(i),
                                                                     (256, 128)), np.float32),
                             "bias": np.zeros(128, np.float32)} for i in range(2)}
    fp32 = sum(x.nbytes for x in jax.tree.leaves(params))
    for bits, min_ratio in ((8, 3.5), (4, 6.0)):
        qt = export_int(params, bits)
        path = tmp_path / f"int{bits}"
        save(str(path), qt)
        back = restore(str(path))
        for a, b in zip(jax.tree.leaves(qt), jax.tree.leaves(back), strict=True):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(dequantize_tree(back)["Dense_0"]["kernel"],
                                   fake_quant_params(params, bits)["Dense_0"]["kernel"],
                                   atol=1e-6)
        assert fp32 / dir_bytes(str(path)) > min_ratio


def test_int8_leaves_carry_no_meta_and_ocdbt_exports_still_restore(tmp_path):
    import orbax.checkpoint as ocp

    from jaxcomp.quant.export import leaf_bits, leaf_shape

    params = {"Dense_0": {"kernel": np.linspace(-1, 1, 24, dtype=np.float32).reshape(6, 4),
                          "bias": np.ones(4, np.float32)}}
    q8, q4 = export_int(params, 8), export_int(params, 4)
    assert "meta" not in q8["Dense_0"]["kernel"] and "meta" in q4["Dense_0"]["kernel"]
    assert (leaf_bits(q8["Dense_0"]["kernel"]), leaf_shape(q8["Dense_0"]["kernel"])) == (8, (6, 4))
    assert (leaf_bits(q4["Dense_0"]["kernel"]), leaf_shape(q4["Dense_0"]["kernel"])) == (4, (6, 4))
    # save() writes one zarr array per leaf: the same tree gives the same bytes twice
    save(str(tmp_path / "a"), q8)
    save(str(tmp_path / "b"), q8)
    assert dir_bytes(str(tmp_path / "a")) == dir_bytes(str(tmp_path / "b"))
    assert not list((tmp_path / "a").glob("ocdbt*"))
    # an export written with orbax's OCDBT default (earlier versions) restores too
    ck = ocp.StandardCheckpointer()
    ck.save(str(tmp_path / "ocdbt"), q4)
    ck.wait_until_finished()
    back = restore(str(tmp_path / "ocdbt"))
    np.testing.assert_array_equal(dequantize_tree(back)["Dense_0"]["kernel"],
                                  dequantize_tree(q4)["Dense_0"]["kernel"])


def test_export_errors():
    w = np.ones((4, 4), np.float32)
    with pytest.raises(ConfigError, match="2-8 bits"):
        export_int({"k": {"kernel": w}}, 16)
    with pytest.raises(ConfigError, match="NaN"):
        export_int({"k": {"kernel": w * np.nan}}, 8)
    qt = export_int({"k": {"kernel": np.zeros((4, 4), np.float32)}}, 8)  # all-zero: defined
    assert np.all(qt["k"]["kernel"]["scale"] == 1) and np.all(qt["k"]["kernel"]["q"] == 0)


def test_int_path_matches_fake_quant_on_trained_mlp():
    ds = digits()
    base = get_model("mlp", input_shape=ds.input_shape, num_classes=10, features=(32, 32))
    res = fit(base, ds, optax.adam(3e-3), epochs=5, batch_size=64, seed=0, progress=False)
    params = res.state.params
    aq = act_quant(base, ["Dense_.*"], bits=8)
    _, ms = aq.model.init(jax.random.key(0), ds.x_train[:1])
    ms = aq.calibrate(params, ms, [ds.x_train[i:i + 256] for i in range(0, 1024, 256)])
    fq, _ = jax.jit(aq.model.apply)(fake_quant_params(params, 8), ms, ds.x_test)
    imodel = int_model(base, export_int(params, 8), ms["act_quant"])
    yi, _ = jax.jit(imodel.apply)(None, {}, ds.x_test)
    agree = float(jnp.mean(jnp.argmax(yi, -1) == jnp.argmax(fq, -1)))
    assert agree >= 0.999
    assert float(jnp.mean(jnp.argmax(yi, -1) == ds.y_test)) > 0.85
    int4 = int_model(base, export_int(params, 4), ms["act_quant"])
    y4, _ = int4.apply(None, {}, ds.x_test[:64])
    fq4, _ = aq.model.apply(fake_quant_params(params, 4), ms, ds.x_test[:64])
    np.testing.assert_allclose(y4, fq4, atol=1e-3, rtol=1e-3)


def test_int_path_conv_folded_rescnn():
    ds = synthetic(num_train=64, num_test=64, shape=(8, 8, 1), num_classes=4)
    base = get_model("rescnn", input_shape=(8, 8, 1), num_classes=4, channels=(4, 8))
    params, ms0 = base.init(jax.random.key(0), ds.x_train[:2])
    f = fold_batchnorm(base, params, ms0, ds.x_train[:2])
    aq = act_quant(f.model, ["stem", "block.*/(conv.*|proj)", "head"], bits=8)
    _, ms = aq.model.init(jax.random.key(0), ds.x_train[:2])
    ms = aq.calibrate(f.params, ms, [ds.x_train])
    fq, _ = jax.jit(aq.model.apply)(fake_quant_params(f.params, 8), ms, ds.x_test)
    imodel = int_model(f.model, export_int(f.params, 8), ms["act_quant"])
    yi, _ = jax.jit(imodel.apply)(None, {}, ds.x_test)
    np.testing.assert_allclose(yi, fq, atol=1e-4, rtol=1e-4)
    with pytest.raises(ConfigError, match="activation range"):
        int_model(f.model, export_int(f.params, 8), {})


@pytest.mark.parametrize("axis", [0, 2, -1, None])
def test_blockwise_export_equals_one_block(monkeypatch, axis):
    import jaxcomp.quant.export as ex

    w = np.asarray(jax.random.normal(jax.random.key(3), (6, 5, 4, 7)), np.float32)
    whole = {b: export_int({"k": {"kernel": w}}, b, axis=axis if axis is not None else -1,
                           per_channel=axis is not None, symmetric=b == 8)["k"]["kernel"]
             for b in (8, 4)}
    monkeypatch.setattr(ex, "BLOCK_ELEMS", 9)  # many blocks, not aligned to rows
    for src in (w, jnp.asarray(w), jnp.asarray(w, jnp.bfloat16)):
        ref = w if src.dtype != jnp.bfloat16 else np.asarray(src, np.float32)
        for b in (8, 4):
            got = export_int({"k": {"kernel": src}}, b, axis=axis if axis is not None else -1,
                             per_channel=axis is not None, symmetric=b == 8)["k"]["kernel"]
            exp = whole[b] if ref is w else export_int(
                {"k": {"kernel": ref}}, b, axis=axis if axis is not None else -1,
                per_channel=axis is not None, symmetric=b == 8)["k"]["kernel"]
            assert sorted(got) == sorted(exp)
            for key in exp:
                np.testing.assert_array_equal(got[key], exp[key])
            assert codes(got).shape == w.shape


def test_export_nan_in_a_later_block_names_the_leaf(monkeypatch):
    import jaxcomp.quant.export as ex

    monkeypatch.setattr(ex, "BLOCK_ELEMS", 8)
    w = np.ones((10, 4), np.float32)
    w[7, 1], w[9, 3] = np.nan, -np.inf
    with pytest.raises(ConfigError, match=r"weights enc/kernel: 2 NaN or infinite value\(s\) "
                                          r"of 40"):
        export_int({"enc": {"kernel": jnp.asarray(w)}}, 8)


_PEAK_CHILD = r"""
import ctypes, json, sys, numpy as np, jax
from jaxcomp.quant.export import export_int

def status(key):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith(key + ":"))

rng = np.random.default_rng(0)
out = {}
for name, axis in (("last_axis", -1), ("middle_axis", 1), ("jax", -1)):
    # 40 MB; the channel axis in the middle of a 3-D leaf: moving it last is not a view
    k = rng.standard_normal((4000, 2500) if axis == -1 else (50, 4000, 50), dtype=np.float32)
    tree = {"d": {"kernel": jax.device_put(k).block_until_ready() if name == "jax" else k}}
    del k
    export_int({"d": {"kernel": np.ones((8, 2500) if axis == -1 else (8, 4000), np.float32)}},
               8, axis=axis)  # compile the scale function for these channel counts
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = status("VmRSS")
    q = export_int(tree, 8, axis=axis)
    out[name] = (status("VmHWM") - base) / tree["d"]["kernel"].nbytes
    del q, tree
print(json.dumps(out))
"""


def test_export_peak_memory_is_the_int8_output_plus_a_block():
    """A fresh child's own peak RSS (VmHWM, reset right before the export), not
    ru_maxrss, which a child inherits from its parent across exec."""
    import json
    import os
    import subprocess
    import sys

    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("needs Linux /proc/self/clear_refs to reset the peak RSS")
    out = subprocess.run([sys.executable, "-c", _PEAK_CHILD], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert out.returncode == 0, out.stderr[-2000:]
    extra = json.loads(out.stdout.strip().splitlines()[-1])
    # the int8 codes are 0.25 of the float32 leaf; a 1 MB block, its mask and its codes are
    # ~0.05 more; a float32 copy of the leaf (the channel axis moved last) would be 1.0 more
    for name, ratio in extra.items():
        assert 0.24 <= ratio <= 0.35, (name, extra)
