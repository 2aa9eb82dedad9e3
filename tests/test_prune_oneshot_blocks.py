"""One-shot pruning of whole models (sequential calibration pass, OWL, the GPT adapter),
sparse export with real bytes, and the driver's bad-input errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcomp.core.errors import ConfigError
from jaxcomp.prune import oneshot
from jaxcomp.quant.calib import layer_inputs, output_error, run_blocks
from tests.calib_tiny_model import make_blocks


@pytest.fixture(scope="module")
def tiny():
    blocks = make_blocks(jax.random.key(0), n_blocks=2, d=32, ff=64)
    xs = [jax.random.normal(jax.random.key(i + 10), (4, 16, 32)) for i in range(2)]
    return blocks, xs


def test_pruned_earlier_blocks_feed_the_later_blocks_statistics(tiny):
    blocks, xs = tiny
    res = oneshot.prune_blocks(blocks, xs, "wanda", sparsity=0.5)
    # block 1's Wanda masks, recomputed by hand from the *pruned* block 0's outputs
    x1 = [res.blocks[0].apply(res.blocks[0].params, x, lambda n, v: v) for x in xs]
    sq = {}
    for x in x1:
        for p, v in layer_inputs(blocks[1], x).items():
            sq[p] = sq.get(p, 0) + jnp.sum(v.reshape(-1, v.shape[-1]) ** 2, 0)
    leaves = {p: blocks[1].params for p in blocks[1].linears}
    for p in blocks[1].linears:
        w = leaves[p]
        for k in p.split("/"):
            w = w[k]
        _, keep = oneshot.wanda(w, jnp.sqrt(sq[p]), sparsity=0.5)
        np.testing.assert_array_equal(np.asarray(res.masks[1][p]), np.asarray(keep))
    assert res.sparsity == 0.5 and res.block_sparsity == [0.5, 0.5]
    assert res.prune_seconds > 0 and res.total_seconds >= res.prune_seconds


def test_sparsegpt_and_wanda_beat_magnitude_on_the_tiny_model(tiny):
    blocks, xs = tiny
    x = jnp.concatenate(xs)
    for kw in (dict(sparsity=0.5), dict(nm="2:4")):
        err = {m: float(output_error(blocks, oneshot.prune_blocks(blocks, xs, m, **kw).blocks,
                                     x)) for m in oneshot.METHODS}
        assert err["sparsegpt"] < err["magnitude"] and err["wanda"] < err["magnitude"], err


def test_owl_sparsities_average_to_the_target_and_follow_outliers(tiny):
    blocks, xs = tiny
    s = oneshot.owl_from_ratios([0.01, 0.05, 0.03, 0.02], 0.6, lam=0.1)
    assert abs(s.mean() - 0.6) < 1e-9 and s.max() - s.min() == pytest.approx(0.2)
    assert np.argmin(s) == 1 and np.argmax(s) == 0          # most outliers: pruned least
    res = oneshot.prune_blocks(blocks, xs, "sparsegpt", sparsity=0.5, owl_lambda=0.05)
    r = oneshot.outlier_ratios(blocks, xs)
    assert res.block_sparsity == pytest.approx(list(oneshot.owl_from_ratios(r, 0.5, lam=0.05)))
    assert abs(res.sparsity - 0.5) < 2e-3          # equal-size blocks: the target overall
    with pytest.raises(ConfigError, match="owl.lam.*0.6"):
        oneshot.owl_from_ratios(r, 0.5, lam=0.6)


def test_gpt_blocks_pruned_and_written_back():
    from jaxcomp.models import get_model
    from jaxcomp.models import gpt_blocks as gb
    model = get_model("gpt", input_shape=(32,), num_layers=2, width=32, num_heads=4)
    params, ms = model.init(jax.random.key(0), None)
    toks = jax.random.randint(jax.random.key(1), (4, 32), 0, 256)
    blocks = gb.gpt_blocks(model, params)
    res = oneshot.prune_blocks(blocks, [gb.embed(model, params, toks)], "sparsegpt", nm="2:4")
    new = gb.write_back(params, res.blocks)
    ks = gb.kernels(res.blocks)
    assert set(ks) == {p for b in blocks for p in b.linears}
    for p, k in ks.items():                        # 2 of every 4 inputs kept, per output
        assert (np.asarray(k != 0).reshape(-1, 4, k.shape[1]).sum(1) <= 2).all(), p
    out, _ = model.apply(new, ms, toks)
    assert out.shape == (4, 32, 256) and bool(jnp.all(jnp.isfinite(out)))
    enc = oneshot.export_sparse({p: np.asarray(k) for p, k in ks.items()}, list(ks), nm="2:4")
    back = oneshot.import_sparse(enc, {p: np.asarray(k) for p, k in ks.items()})
    assert all(np.array_equal(back[p], np.asarray(ks[p])) for p in ks)


@pytest.mark.parametrize("n,m", [(2, 4), (4, 8), (1, 4)])
def test_nm_export_round_trip_is_bit_exact_with_real_bytes(n, m):
    rng = np.random.default_rng(m + n)
    w = rng.normal(size=(32, 6)).astype(np.float32)
    _, keep = oneshot.magnitude(w, nm=(n, m))
    w = np.where(np.asarray(keep), w, 0).astype(np.float32)
    w[0:m, 0] = 0.0                                  # a group with no non-zero at all
    w[m, 1] = -0.0 if keep[m, 1] else w[m, 1]        # a stored negative zero
    e = oneshot.encode_nm(w, n, m)
    d = oneshot.decode_nm(e)
    assert d.dtype == w.dtype and np.array_equal(d.view(np.uint32), w.view(np.uint32))
    bits = 2 if m == 4 else 3
    assert e["values"].shape == (6, 32 // m * n)
    assert oneshot.nm_nbytes(e) == w.size * n // m * 4 + -(-w.size * n // m * bits // 8)
    with pytest.raises(ConfigError, match=f"not {n}:{m} sparse.*output 0"):
        oneshot.encode_nm(np.ones((32, 6), np.float32), n, m)


@pytest.mark.parametrize("fmt", ["bitmask", "relative"])
def test_unstructured_export_through_storage(fmt):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(64, 16)).astype(np.float32)
    ws, _ = oneshot.magnitude(w, sparsity=0.5)
    tree = {"a": {"kernel": np.asarray(ws), "bias": np.ones(16, np.float32)}}
    enc = oneshot.export_sparse(tree, ["a/kernel"], fmt=fmt)
    back = oneshot.import_sparse(enc, tree)
    np.testing.assert_array_equal(back["a"]["kernel"], np.asarray(ws))
    np.testing.assert_array_equal(back["a"]["bias"], tree["a"]["bias"])
    assert oneshot.sparse_nbytes(enc) < w.nbytes * 0.7 + 64


def test_driver_bad_inputs_name_the_layer_the_value_and_what_is_allowed(tiny):
    blocks, xs = tiny
    cases = [
        (dict(nm="3:5", x=xs), ["blocks[0]/attn/q/kernel", "M=5", "does not divide", "32"]),
        (dict(sparsity=1.0, x=xs), ["sparsity", "1.0", "[0, 1)"]),
        (dict(sparsity=[0.5], x=xs), ["1 values for 2 blocks"]),
        (dict(sparsity=0.5, x=[jnp.ones((4, 16, 24))]), ["x_calib", "(4, 16, 24)", "block 0"]),
        (dict(sparsity=0.5, x=[jnp.ones((4, 16, 32), jnp.int32)]), ["x_calib[0]", "int32",
                                                                    "float"]),
        (dict(sparsity=0.5, x=[]), ["x_calib", "no calibration batch"]),
        (dict(sparsity=0.5, nm="2:4", x=xs), ["fixes the sparsity"]),
        (dict(x=xs), ["give sparsity"]),
    ]
    for kw, words in cases:
        x = kw.pop("x")
        with pytest.raises(ConfigError) as e:
            oneshot.prune_blocks(blocks, x, "sparsegpt", **kw)
        for w in words:
            assert w in str(e.value), (kw, w, str(e.value))
    with pytest.raises(ConfigError, match="method.*'wand'"):
        oneshot.prune_blocks(blocks, xs, "wand", sparsity=0.5)
    # a valid run leaves the input blocks unchanged
    y0 = run_blocks(blocks, xs[0])
    oneshot.prune_blocks(blocks, xs, "magnitude", sparsity=0.5)
    np.testing.assert_array_equal(np.asarray(run_blocks(blocks, xs[0])), np.asarray(y0))
