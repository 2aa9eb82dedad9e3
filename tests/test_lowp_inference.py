"""Low-precision GPT inference: integer / fp8 / weight-only / bf16 paths equal fake-quant."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxcomp.core import ConfigError
from jaxcomp.models.gpt import GPT, generate
from jaxcomp.models.kv_cache import decode_logits
from jaxcomp.quant.formats import get_format
from jaxcomp.quant.lowp import (
    MODES,
    QuantLinear,
    convert_gpt,
    dequantize_kernel,
    lowp_dense,
    quantize_kernel,
    weight_bytes,
)

KW = dict(num_layers=2, width=64, num_heads=4, context=32)


@pytest.fixture(scope="module")
def gpt():
    return GPT(**KW, mlp="swiglu", mlp_hidden=128, num_kv_heads=2, tie_embeddings=False,
               rngs=nnx.Rngs(0))


def close(a, b, rel):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert np.abs(a - b).max() <= rel * np.abs(b).max(), np.abs(a - b).max() / np.abs(b).max()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("use_jit", [True, False])
def test_layer_equals_fake_quant(mode, use_jit):
    kx, kw = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (3, 5, 128))
    parts = quantize_kernel(jax.random.normal(kw, (128, 48)) * 0.1, mode, group_size=32)
    f = lambda x, p, fake: lowp_dense(x, p, mode, fake=fake)          # noqa: E731
    f = jax.jit(f, static_argnums=2) if use_jit else f
    got, ref = f(x, parts, False), f(x, parts, True)
    assert got.dtype == jnp.float32 and got.shape == (3, 5, 48)
    close(got, ref, 1e-5)


def test_w8a8_is_an_integer_matmul_equal_to_numpy():
    x = jax.random.normal(jax.random.key(1), (4, 64))
    w = jax.random.normal(jax.random.key(2), (64, 16))
    parts = quantize_kernel(w, "w8a8")
    assert parts["w"].dtype == jnp.int8 and parts["scale"].shape == (1, 16)
    xn, wn = np.asarray(x), np.asarray(w)
    sx = np.abs(xn).max(1, keepdims=True) / np.float32(127)
    sw = np.abs(wn).max(0, keepdims=True) / np.float32(127)
    qx = np.clip(np.round(xn / sx), -127, 127).astype(np.int64)
    qw = np.clip(np.round(wn / sw), -127, 127).astype(np.int64)
    np.testing.assert_array_equal(np.asarray(parts["w"]), qw)
    want = (qx @ qw).astype(np.float32) * sx * sw
    np.testing.assert_allclose(np.asarray(lowp_dense(x, parts, "w8a8")), want, rtol=1e-5,
                               atol=1e-6)
    jaxpr = str(jax.make_jaxpr(lambda x: lowp_dense(x, parts, "w8a8"))(x))
    assert "i8[4,64]" in jaxpr and "preferred_element_type=int32" in jaxpr


@pytest.mark.parametrize("mode,fmt", [("w8a16", "int8"), ("w4a16", "int4")])
def test_weight_only_kernels_equal_format_fake_quant(mode, fmt):
    w = jax.random.normal(jax.random.key(3), (64, 24))
    parts = quantize_kernel(w, mode, group_size=16)
    assert parts["scale"].shape == (4, 24)
    if mode == "w4a16":   # two codes per byte
        assert parts["w"].dtype == jnp.uint8 and parts["w"].shape == (32, 24)
    ref = get_format(fmt, axis=-1, group_size=16).fake_quant(w)
    np.testing.assert_array_equal(np.asarray(dequantize_kernel(parts, mode)), np.asarray(ref))


@pytest.mark.parametrize("mode", MODES)
def test_gpt_forward_and_generate_with_converted_weights(gpt, mode):
    x = jax.random.randint(jax.random.key(4), (2, 24), 0, 256)
    q = convert_gpt(gpt, mode, group_size=32, head=True)
    assert isinstance(q.head, QuantLinear) and isinstance(q.blocks[1].mlp.gate, QuantLinear)
    assert isinstance(gpt.blocks[0].attn.q, nnx.Linear)                 # original untouched
    fwd = nnx.jit(lambda m, x: m(x))
    logits = fwd(q, x)
    fake = fwd(convert_gpt(gpt, mode, group_size=32, head=True, fake=True), x)
    close(logits, fake, 1e-3)         # layers agree to 1e-5; rounding flips may propagate
    tol = {"bf16": 0.02, "w8a8": 0.05, "fp8": 0.1, "w8a16": 0.02, "w4a16": 0.2}[mode]
    close(logits, fwd(gpt, x), tol)
    if mode == "w8a8":                # the decode path runs on the converted weights too
        close(decode_logits(q, x, prefill=8, kv_quant="int8"), logits, 0.05)
        out = generate(q, x[:, :4], 3)
        np.testing.assert_array_equal(np.asarray(out[:, 4:]),
                                      np.asarray(jnp.argmax(fwd(q, out)[:, 3:-1], -1)))


def test_converted_weights_are_smaller(gpt):
    sizes = {m: weight_bytes(convert_gpt(gpt, m, group_size=32)) for m in ("fp32",) + MODES}
    linear = 2 * 64 * (3 * 64 // 4 * 2 + 64 + 64 * 3 * 2 + 64 * 4)    # not exact: compare only
    assert sizes["bf16"] < sizes["fp32"] and sizes["w8a8"] < sizes["bf16"]
    assert sizes["w4a16"] < sizes["w8a16"] < sizes["bf16"] and linear > 0


def test_bad_inputs(gpt):
    with pytest.raises(ConfigError, match="lowp mode"):
        convert_gpt(gpt, "int3")
    with pytest.raises(ConfigError, match="group_size"):
        convert_gpt(gpt, "w4a16", group_size=48)
    with pytest.raises(ConfigError, match="group_size"):
        convert_gpt(gpt, "w8a16", group_size=0)
