"""The byte GPT: shapes, causal mask, grouped-query heads, RoPE, KV-cache decode, training."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxcomp.core import ConfigError
from jaxcomp.models import get_model
from jaxcomp.models.gpt import GPT, as_module, attend, generate, rope

KW = dict(num_layers=2, width=32, num_heads=4, context=16)
VARIANTS = [dict(), dict(positions="rope", mlp="swiglu", num_kv_heads=2, tie_embeddings=False)]


def tokens(b=2, t=12, seed=1):
    return jax.random.randint(jax.random.key(seed), (b, t), 0, 256)


@pytest.mark.parametrize("kw", VARIANTS)
@pytest.mark.parametrize("use_jit", [True, False])
def test_shapes_and_causal_mask(kw, use_jit):
    gpt = GPT(**KW, **kw, rngs=nnx.Rngs(0))
    fwd = nnx.jit(lambda m, x: m(x)) if use_jit else (lambda m, x: m(x))
    x = tokens()
    out = fwd(gpt, x)
    assert out.shape == (2, 12, 256) and out.dtype == jnp.float32
    changed = fwd(gpt, x.at[:, 7].set((x[:, 7] + 1) % 256))
    np.testing.assert_array_equal(np.asarray(out[:, :7]), np.asarray(changed[:, :7]))
    assert np.abs(np.asarray(out[:, 7:] - changed[:, 7:])).max() > 1e-4


def test_linear_layers_at_stable_paths():
    gpt = GPT(**KW, mlp="swiglu", tie_embeddings=False, rngs=nnx.Rngs(0))
    _, params, _ = nnx.split(gpt, nnx.Param, ...)
    paths = {"/".join(map(str, k)) for k, _ in nnx.to_flat_state(params)}
    for i in range(2):
        for name in ("attn/q", "attn/k", "attn/v", "attn/o", "mlp/up", "mlp/gate", "mlp/down"):
            assert f"blocks/{i}/{name}/kernel" in paths
    assert {"embed/embedding", "head/kernel", "pos/embedding"} <= paths


def test_grouped_query_attention_equals_repeated_kv_heads():
    """GQA with K kv-heads equals plain multi-head attention with each kv head repeated."""
    kq, kk, kv = jax.random.split(jax.random.key(0), 3)
    q = jax.random.normal(kq, (2, 5, 4, 8))
    k = jax.random.normal(kk, (2, 5, 2, 8))
    v = jax.random.normal(kv, (2, 5, 2, 8))
    pos = jnp.arange(5)
    gqa = attend(q, k, v, pos, pos)
    mha = attend(q, jnp.repeat(k, 2, axis=2), jnp.repeat(v, 2, axis=2), pos, pos)
    np.testing.assert_allclose(gqa, mha, atol=1e-6)
    # hand check of head 0, query 1 against numpy softmax attention
    s = np.asarray(q[0, 1, 0] @ k[0, :2, 0].T) / np.sqrt(8)
    p = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
    np.testing.assert_allclose(gqa[0, 1, 0], p @ np.asarray(v[0, :2, 0]), atol=1e-5)


def test_gqa_model_with_all_kv_heads_equals_mha_model():
    a = GPT(**KW, num_kv_heads=4, rngs=nnx.Rngs(3))
    b = GPT(**KW, rngs=nnx.Rngs(3))
    np.testing.assert_allclose(a(tokens()), b(tokens()), atol=1e-6)
    with pytest.raises(ConfigError, match="num_kv_heads"):
        GPT(**KW, num_kv_heads=3, rngs=nnx.Rngs(0))


def test_rope_hand_case_and_relative_positions():
    x = jnp.array([1.0, 0.0, 0.0, 1.0]).reshape(1, 1, 1, 4)  # pairs (x0, x2), (x1, x3)
    out = np.asarray(rope(x, jnp.array([2]), base=100.0))[0, 0, 0]
    a0, a1 = 2.0, 2.0 / 10.0  # angles: pos * base**(-i/half), half = 2
    want = [np.cos(a0), -np.sin(a1), np.sin(a0), np.cos(a1)]
    np.testing.assert_allclose(out, want, atol=1e-6)
    q = jax.random.normal(jax.random.key(0), (1, 1, 1, 8))
    k = jax.random.normal(jax.random.key(1), (1, 1, 1, 8))
    dot = lambda m, n: float(jnp.sum(rope(q, jnp.array([m])) * rope(k, jnp.array([n]))))
    assert dot(5, 2) == pytest.approx(dot(13, 10), abs=1e-5)
    assert dot(5, 2) != pytest.approx(dot(5, 3), abs=1e-3)


@pytest.mark.parametrize("kw", VARIANTS)
def test_kv_cache_decode_equals_full_forward(kw):
    gpt = GPT(**KW, **kw, rngs=nnx.Rngs(0))
    x = tokens()
    full = gpt(x)
    cache = gpt.init_cache(2)
    logits, cache = gpt.forward(x[:, :5], cache, 0)
    steps = [logits]
    step = nnx.jit(lambda m, t, c, p: m.forward(t, c, p))
    for i in range(5, 12):
        logits, cache = step(gpt, x[:, i:i + 1], cache, jnp.int32(i))
        steps.append(logits)
    np.testing.assert_allclose(jnp.concatenate(steps, 1), full, atol=1e-5)


def test_generate_greedy_matches_argmax_of_full_forward():
    gpt = GPT(**KW, rngs=nnx.Rngs(0))
    out = generate(gpt, tokens(t=3), 4)
    assert out.shape == (2, 7)
    greedy = jnp.argmax(gpt(out[:, :-1]), -1)  # causal: position i-1 sees the prefix out[:, :i]
    np.testing.assert_array_equal(out[:, 3:], greedy[:, 2:])
    s1 = generate(gpt, tokens(t=3), 4, key=jax.random.key(5), temperature=1.0)
    s2 = generate(gpt, tokens(t=3), 4, key=jax.random.key(5), temperature=1.0)
    np.testing.assert_array_equal(s1, s2)
    with pytest.raises(ConfigError, match="needs a key"):
        generate(gpt, tokens(t=3), 4, temperature=1.0)
    with pytest.raises(ConfigError, match="exceeds context"):
        generate(gpt, tokens(t=3), 20)


def test_registered_model_and_as_module():
    model = get_model("gpt", input_shape=(16,), num_layers=1, width=32, num_heads=2,
                      positions="rope", mlp="swiglu")
    params, ms = model.init(jax.random.key(0), None)
    x = tokens(t=16)
    logits, _ = model.apply(params, ms, x, train=False)
    assert logits.shape == (2, 16, 256)
    module = as_module(model, params, ms)
    np.testing.assert_allclose(module(x), logits, atol=1e-6)
    pure = nnx.to_pure_dict(params)
    np.testing.assert_allclose(model.apply(pure, ms, x)[0], logits, atol=1e-6)
    with pytest.raises(ConfigError, match="model.positions"):
        get_model("gpt", input_shape=(16,), positions="alibi")
