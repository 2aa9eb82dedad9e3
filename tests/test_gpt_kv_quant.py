"""Quantized KV cache: numpy reference quantizers, decode parity, logits tolerance, byte counts."""

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from flax import nnx

from jaxcomp.core import ConfigError
from jaxcomp.models.gpt import GPT, generate
from jaxcomp.models.kv_cache import (
    cache_bytes,
    decode_bpb,
    decode_logits,
    dequantize_kv,
    kv_cache_bytes,
    kv_mode,
    kv_write,
    quantize_kv,
)

KW = dict(num_layers=2, width=64, num_heads=4, context=64)
QMAX = {"int8": 127, "int4": 7, "fp8": 448.0}


@pytest.fixture(scope="module")
def gpt():
    return GPT(**KW, num_kv_heads=2, rngs=nnx.Rngs(0))


def np_reference(x, quant, scale=None):
    """Dequantized values by a plain numpy absmax quantizer (scale per last-axis row)."""
    x = np.asarray(x, np.float32)
    if scale is None:
        amax = np.abs(x).max(-1, keepdims=True)
        scale = np.where(amax > 0, amax / np.float32(QMAX[quant]), 1).astype(np.float32)
    v = x / scale
    if quant == "fp8":
        q = np.clip(v, -448, 448).astype(ml_dtypes.float8_e4m3fn).astype(np.float32)
    else:
        q = np.clip(np.round(v), -QMAX[quant], QMAX[quant])
    return q * scale


@pytest.mark.parametrize("quant", ["int8", "int4", "fp8"])
@pytest.mark.parametrize("use_jit", [True, False])
def test_per_token_quantizer_matches_numpy(quant, use_jit):
    x = jax.random.normal(jax.random.key(0), (2, 5, 3, 8)) * 3.0
    f = (lambda x: dequantize_kv(*quantize_kv(x, quant), quant))
    got = jax.jit(f)(x) if use_jit else f(x)
    np.testing.assert_allclose(np.asarray(got), np_reference(x, quant), rtol=1e-6, atol=1e-7)


def test_int4_codes_are_packed_two_per_byte():
    x = jnp.array([[[[7.0, -7.0, 1.0, 0.0]]]])              # scale 1: codes 7, -7, 1, 0
    q, s = quantize_kv(x, "int4")
    assert q.dtype == jnp.uint8 and q.shape == (1, 1, 1, 2) and float(s[0, 0, 0]) == 1.0
    # low nibble: q[j] + 8, high nibble: q[j + D/2] + 8
    assert q[0, 0, 0].tolist() == [(7 + 8) | ((1 + 8) << 4), (-7 + 8) | ((0 + 8) << 4)]


@pytest.mark.parametrize("quant", ["int8", "int4", "fp8"])
def test_cache_entry_per_head_scale_matches_numpy(quant):
    cache = GPT(**KW, rngs=nnx.Rngs(0)).init_cache(2, 16, kv_quant=quant, kv_scale="head")
    assert kv_mode(cache[0]) == (quant, "head")
    k1, v1 = (jax.random.normal(jax.random.key(i), (2, 6, 4, 16)) for i in (1, 2))
    k2, v2 = (jax.random.normal(jax.random.key(i), (2, 1, 4, 16)) * 4 for i in (3, 4))
    entry, _, _ = kv_write(cache[0], k1, v1, 0)
    entry, k, v = kv_write(entry, k2, v2, 6)                  # reuses the prefill's scale
    for got, first, second in ((k, k1, k2), (v, v1, v2)):
        amax = np.abs(np.asarray(first)).max(axis=(1, 3), keepdims=True)
        scale = (amax / np.float32(QMAX[quant])).astype(np.float32)
        want = np_reference(np.concatenate([first, second], 1), quant, scale)
        np.testing.assert_allclose(np.asarray(got[:, :7]), want, rtol=1e-6, atol=1e-7)
        assert np.all(np.asarray(got[:, 7:]) == 0)            # unwritten positions
    assert np.abs(np.asarray(k[:, 6])).max() <= np.abs(np.asarray(k1)).max() + 1e-6  # saturates


def test_decode_without_quantization_is_unchanged(gpt):
    x = jax.random.randint(jax.random.key(1), (2, 40), 0, 256)
    full = np.asarray(gpt(x))
    np.testing.assert_allclose(np.asarray(decode_logits(gpt, x, prefill=17)), full,
                               atol=2e-5, rtol=1e-5)
    out = generate(gpt, x[:, :5], 6)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(generate(gpt, x[:, :5], 6,
                                                                       kv_quant=None)))
    greedy = jnp.argmax(gpt(out)[:, 4:-1], -1)               # each new byte: argmax of a full pass
    np.testing.assert_array_equal(np.asarray(out[:, 5:]), np.asarray(greedy))


@pytest.mark.parametrize("quant,tol", [("int8", 0.01), ("fp8", 0.03), ("int4", 0.1)])
def test_quantized_cache_logits_close_to_fp32(gpt, quant, tol):
    x = jax.random.randint(jax.random.key(2), (2, 40), 0, 256)
    full = np.asarray(gpt(x))
    err = np.abs(np.asarray(decode_logits(gpt, x, kv_quant=quant, prefill=8)) - full).max()
    assert 0 < err < tol * np.abs(full).max()
    if quant == "int8":  # per-token scales: prefill and step-by-step decoding store equal codes
        b = decode_logits(gpt, x, kv_quant=quant, prefill=40)
        a = decode_logits(gpt, x, kv_quant=quant, prefill=1)
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-5, rtol=1e-5)


def test_decode_bpb_int8_close(gpt):
    x = np.asarray(jax.random.randint(jax.random.key(3), (4, 33), 0, 256))
    ref = decode_bpb(gpt, x[:, :-1], x[:, 1:])
    q8 = decode_bpb(gpt, x[:, :-1], x[:, 1:], kv_quant="int8", prefill=4)
    assert 7.5 < ref < 8.5 and abs(q8 - ref) < 2e-3


@pytest.mark.parametrize("quant", [None, "int8", "int4", "fp8"])
@pytest.mark.parametrize("scale", ["token", "head"])
def test_cache_bytes_formula(gpt, quant, scale):
    cache = gpt.init_cache(3, 20, kv_quant=quant, kv_scale=scale)
    by_value = {None: 4, "int8": 1, "int4": 0.5, "fp8": 1}[quant]
    scales = 0 if quant is None else (20 if scale == "token" else 1)
    want = 2 * 2 * 3 * 2 * (20 * 16 * by_value + 4 * scales)   # 2 (k, v) · L · B · K · (...)
    assert cache_bytes(cache) == kv_cache_bytes(2, 3, 20, 2, 16, kv_quant=quant,
                                                kv_scale=scale) == want


def test_bad_kv_options(gpt):
    with pytest.raises(ConfigError, match="kv_quant"):
        gpt.init_cache(1, 8, kv_quant="int3")
    with pytest.raises(ConfigError, match="kv_scale"):
        generate(gpt, jnp.zeros((1, 2), jnp.int32), 2, kv_quant="int8", kv_scale="channel")
    odd = GPT(num_layers=1, width=12, num_heads=4, context=8, rngs=nnx.Rngs(0))
    with pytest.raises(ConfigError, match="head_dim=3"):
        odd.init_cache(1, 8, kv_quant="int4")
    with pytest.raises(ConfigError, match="prefill"):
        decode_logits(gpt, jnp.zeros((1, 4), jnp.int32), prefill=5)
