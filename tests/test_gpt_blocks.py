"""The GPT <-> calib blocks adapter: same function as the NNX GPT, taps, write-back."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxcomp.core.errors import ConfigError, PathError
from jaxcomp.data.text import TextData
from jaxcomp.models import get_model
from jaxcomp.models import gpt_blocks as gb
from jaxcomp.models.lm import bits_per_byte
from jaxcomp.quant import calib

VARIANTS = {
    "learned_gelu": {},
    "rope_swiglu_gqa_untied_bias": dict(positions="rope", mlp="swiglu", num_kv_heads=2,
                                        tie_embeddings=False, bias=True),
}


def _gpt(**kw):
    model = get_model("gpt", input_shape=(16,), num_layers=2, width=32, num_heads=4, **kw)
    params, ms = model.init(jax.random.key(1), None)
    # non-trivial norms and biases, so a dropped scale/bias would show
    params = jax.tree.map(lambda a: a + 0.05 * jax.random.normal(jax.random.key(2), a.shape),
                          params)
    return model, params, ms


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("use_jit", [True, False])
def test_blocks_then_head_equal_the_gpt(variant, use_jit):
    model, params, ms = _gpt(**VARIANTS[variant])
    tokens = jax.random.randint(jax.random.key(3), (3, 16), 0, 256)
    blocks = gb.gpt_blocks(model, params)
    assert len(blocks) == 2

    def run(params, tokens):
        x = gb.embed(model, params, tokens)
        return gb.logits(model, params, calib.run_blocks(gb.gpt_blocks(model, params), x))

    run = jax.jit(run) if use_jit else run
    ref, _ = model.apply(params, ms, tokens)
    np.testing.assert_allclose(np.asarray(run(params, tokens)), np.asarray(ref), atol=1e-5,
                               rtol=1e-5)


def test_taps_see_every_linear_input_with_its_shape():
    model, params, _ = _gpt(mlp="swiglu", num_kv_heads=2)
    blocks = gb.gpt_blocks(model, params)
    x = gb.embed(model, params, jnp.zeros((2, 16), jnp.int32))
    seen = calib.layer_inputs(blocks[1], x)
    assert sorted(seen) == sorted(blocks[1].linears)
    assert blocks[1].linears == tuple(f"blocks/1/{n}/kernel" for n in
                                      ("attn/q", "attn/k", "attn/v", "attn/o", "mlp/up",
                                       "mlp/gate", "mlp/down"))
    leaves = gb.kernels(blocks)
    for name, v in seen.items():
        assert v.shape == (2, 16, leaves[name].shape[0]), name


def test_write_back_unchanged_is_identity_and_quantized_kernels_land():
    model, params, ms = _gpt()
    blocks = gb.gpt_blocks(model, params)
    same = gb.write_back(params, blocks)
    assert isinstance(same, nnx.State)
    for a, b in zip(jax.tree.leaves(same), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    tokens = jax.random.randint(jax.random.key(4), (4, 16), 0, 256)
    res = calib.quantize_blocks(blocks, [gb.embed(model, params, tokens)], "rtn", bits=3,
                                group_size=32)
    qparams = gb.write_back(params, res.blocks)
    # the NNX GPT running the written-back params equals the quantized blocks
    ref, _ = model.apply(qparams, ms, tokens)
    x = calib.run_blocks(res.blocks, gb.embed(model, params, tokens))
    np.testing.assert_allclose(np.asarray(gb.logits(model, params, x)), np.asarray(ref),
                               atol=1e-5)
    # a pure dict works too, embeddings untouched
    qpure = gb.write_back(nnx.to_pure_dict(params), res.blocks)
    np.testing.assert_array_equal(qpure["embed"]["embedding"],
                                  nnx.to_pure_dict(params)["embed"]["embedding"])
    np.testing.assert_array_equal(qpure["blocks"][0]["attn"]["q"]["kernel"],
                                  gb.kernels(res.blocks)["blocks/0/attn/q/kernel"])


def test_write_back_errors_name_the_path():
    model, params, _ = _gpt()
    with pytest.raises(PathError, match="blocks/9/attn/q/kernel"):
        gb.write_back(params, {"blocks/9/attn/q/kernel": jnp.zeros((32, 32))})
    with pytest.raises(ConfigError, match="blocks/0/attn/q/kernel.*shape"):
        gb.write_back(params, {"blocks/0/attn/q/kernel": jnp.zeros((3, 3))})
    with pytest.raises(ConfigError, match="kv_bits"):
        gb.gpt_spec(model, kv_bits=1)


def test_tapped_model_bpb_matches_and_kv_quant_is_close():
    model, params, ms = _gpt()
    data = TextData.from_bytes(bytes(range(256)) * 8, name="toy")
    kw = dict(context=16, batch_size=8, max_windows=8)
    ref = bits_per_byte(model, params, ms, data, **kw)
    same = bits_per_byte(gb.tapped_model(model), params, ms, data, **kw)
    assert abs(same - ref) < 1e-5
    kv8 = bits_per_byte(gb.tapped_model(model, kv_bits=8), params, ms, data, **kw)
    kv2 = bits_per_byte(gb.tapped_model(model, kv_bits=2), params, ms, data, **kw)
    assert kv8 != ref and abs(kv8 - ref) < abs(kv2 - ref)
    a8 = bits_per_byte(gb.tapped_model(model, calib.act_quant_tap(8)), params, ms, data, **kw)
    assert a8 != ref and abs(a8 - ref) < 0.05
