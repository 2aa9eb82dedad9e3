"""QLoRA: packed 4-bit base (NF4, int4 g64) dequantized in apply, adapters in float."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcomp import lora
from jaxcomp.core.errors import ConfigError
from jaxcomp.lora.qlora import pack_codes, unpack_codes
from jaxcomp.quant.formats import get_format, pack_bits

FORMATS = [("nf4", {}), ("int4", {"group_size": 64})]


def _params(key=0):
    ks = jax.random.split(jax.random.key(key), 2)
    return {"a": {"kernel": jax.random.normal(ks[0], (128, 32)), "bias": jnp.zeros(32)},
            "b": {"kernel": jax.random.normal(ks[1], (64, 96))}}


def test_pack_codes_matches_numpy_pack_bits():
    codes = np.random.default_rng(0).integers(0, 16, size=37).astype(np.uint8)
    packed = pack_codes(jnp.asarray(codes), 4)
    np.testing.assert_array_equal(packed, pack_bits(codes, 4))
    np.testing.assert_array_equal(unpack_codes(packed, 4, 37), codes)


@pytest.mark.parametrize("use_jit", [True, False])
@pytest.mark.parametrize("fmt,opts", FORMATS, ids=["nf4", "int4_g64"])
def test_base_dequantizes_to_the_formats_values(fmt, opts, use_jit):
    p = _params()
    lp = lora.init_params(p, 4, key=jax.random.key(1))
    qp, base = lora.quantize_base(lp, fmt, **opts)
    assert "kernel" not in qp["a"] and "bias" in qp["a"]
    dtypes = {x.dtype for x in jax.tree.leaves(base)}
    assert dtypes == {jnp.dtype(jnp.uint8), jnp.dtype(jnp.float32)}
    f = get_format(fmt, **opts)
    deq = (jax.jit(lambda b: b.dequantize()) if use_jit else lambda b: b.dequantize())(base)
    for name in ("a", "b"):
        w = p[name]["kernel"]
        np.testing.assert_array_equal(deq[f"{name}/kernel"], f.decode(f.encode(w)))
        err = float(jnp.abs(deq[f"{name}/kernel"] - w).max() / jnp.abs(w).max())
        assert 0 < err < 0.2
    # bytes: 4-bit codes + one float32 scale per 64 values = 4.5 bits
    n = 128 * 32 + 64 * 96
    assert base.nbytes == n // 2 + 4 * n // 64 and base.fp32_bytes == 4 * n
    # merge = dequantized base + scale * A @ B (B random, as after training)
    qp["a"]["lora_b"] = jax.random.normal(jax.random.key(2), (4, 32))
    t = lora.transform(base)
    merged = (jax.jit(t.apply) if use_jit else t.apply)(qp, t.init(qp))
    a = qp["a"]
    want = np.asarray(deq["a/kernel"], np.float64) + float(a["lora_scale"]) * (
        np.asarray(a["lora_a"], np.float64) @ np.asarray(a["lora_b"], np.float64))
    np.testing.assert_allclose(merged["a"]["kernel"], want, atol=1e-5)
    assert sorted(merged["a"]) == ["bias", "kernel"]


def test_qlora_base_bytes_ratio_on_gpt():
    from jaxcomp.models import get_model

    m = get_model("gpt", input_shape=(256,), num_layers=4, width=256, num_heads=4, context=256)
    p, _ = jax.eval_shape(lambda: m.init(jax.random.key(0), jnp.zeros((1, 256), jnp.int32)))
    p = jax.tree.map(lambda s: jnp.ones(s.shape, s.dtype), p)
    where = r"blocks/.*/(attn|mlp)/.*/kernel"
    lp = lora.init_params(p, 8, where=where, key=jax.random.key(1))
    for fmt, opts in FORMATS:
        _, base = lora.quantize_base(lp, fmt, **opts)
        assert len(base.meta) == 4 * 6
        assert base.nbytes / base.fp32_bytes == pytest.approx(4.5 / 32) and 4.5 / 32 <= 0.3


def test_qlora_trains_adapters_on_tiny_gpt():
    from jaxcomp.models import get_model
    from jaxcomp.models.lm import lm_loss
    from jaxcomp.train import create_state, make_train_step

    m = get_model("gpt", input_shape=(32,), num_layers=2, width=64, num_heads=4, context=32)
    p, ms = m.init(jax.random.key(0), jnp.zeros((1, 32), jnp.int32))
    lp = lora.init_params(p, 4, where=r"blocks/.*/(attn|mlp)/.*/kernel", key=jax.random.key(1),
                          alpha=8.0)
    qp, base = lora.quantize_base(lp, "nf4")
    t = lora.transform(base)
    tx = lora.freeze_base(optax.adam(1e-2))
    state = create_state(qp, ms, tx, key=jax.random.key(2), transform=t)
    assert lora.tree_bytes(state.opt_state) == 2 * sum(
        x.nbytes for _, parent, name in lora.adapted(qp)
        for x in (parent[lora.adapter_names(name)[0]], parent[lora.adapter_names(name)[1]])) + 4
    step = make_train_step(m, tx, t, lm_loss, donate=False)
    text = np.frombuffer(b"the quick brown fox jumps over the lazy dog. " * 8, np.uint8)
    x = np.stack([text[i:i + 32] for i in range(0, 256, 16)]).astype(np.int32)
    y = np.stack([text[i + 1:i + 33] for i in range(0, 256, 16)]).astype(np.int32)
    batch = {"x": jnp.asarray(x), "y": jnp.asarray(y)}
    embed = np.asarray(qp["embed"]["embedding"])
    losses = []
    for _ in range(8):
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    assert losses[-1] < losses[0] - 0.1
    np.testing.assert_array_equal(state.params["embed"]["embedding"], embed)
    assert state.comp_state is not None and state.comp_state.nbytes == base.nbytes


def test_errors():
    lp = lora.init_params({"d": {"kernel": jnp.ones((96, 8))}}, 2, key=jax.random.key(0))
    with pytest.raises(ConfigError, match=r"d/kernel of shape \(96, 8\).*block_size=64"):
        lora.quantize_base(lp, "nf4")
    with pytest.raises(ConfigError, match="allowed 'nf4' or 'int4'"):
        lora.quantize_base(lp, "mxfp4")
    qp, base = lora.quantize_base(lp, "nf4", block_size=32)
    with pytest.raises(ConfigError, match="d/kernel: no kernel in params"):
        lora.merge(qp)
    with pytest.raises(ConfigError, match="no adapters"):
        lora.quantize_base({"d": {"kernel": jnp.ones((64, 8))}})
