"""LoRA: adapters beside kernels, the merge transform, freezing, PiSSA, export, fit."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxcomp import lora
from jaxcomp.core.errors import ConfigError
from jaxcomp.data.dataset import Dataset
from jaxcomp.flax import from_linen
from jaxcomp.flax.nnx import from_nnx
from jaxcomp.train import fit
from jaxcomp.train.loop import init_state


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.Dense(16)(x))
        return nn.Dense(3)(x)


class NnxMLP(nnx.Module):
    def __init__(self, rngs):
        self.l1 = nnx.Linear(6, 16, rngs=rngs)
        self.l2 = nnx.Linear(16, 3, rngs=rngs)

    def __call__(self, x):
        return self.l2(nnx.relu(self.l1(x)))


def _linen():
    m = from_linen(MLP())
    p, ms = m.init(jax.random.key(0), jnp.ones((1, 6)))
    return m, p, ms


def _nnx():
    m = from_nnx(NnxMLP)
    p, ms = m.init(jax.random.key(0), jnp.ones((1, 6)))
    return m, p, ms


def _randomize_b(lp, key):
    """Adapters as after training: B random instead of zeros."""
    out = lora.adapters.as_dicts(lp)
    for i, (_, parent, name) in enumerate(lora.adapted(out)):
        b_n = lora.adapter_names(name)[1]
        parent[b_n] = jax.random.normal(jax.random.fold_in(key, i), parent[b_n].shape)
    return out


@pytest.mark.parametrize("use_jit", [True, False])
def test_merge_matches_numpy_unmerged_forward(use_jit):
    m, p, ms = _linen()
    lp = lora.init_params(p, 2, where="Dense_0/kernel", key=jax.random.key(1), alpha=6.0)
    assert sorted(lp["Dense_0"]) == ["bias", "kernel", "lora_a", "lora_b", "lora_scale"]
    assert sorted(lp["Dense_1"]) == ["bias", "kernel"]
    assert lp["Dense_0"]["lora_a"].shape == (6, 2) and lp["Dense_0"]["lora_b"].shape == (2, 16)
    assert float(lp["Dense_0"]["lora_scale"]) == 3.0
    bound = 1 / np.sqrt(6)
    assert np.abs(np.asarray(lp["Dense_0"]["lora_a"])).max() <= bound
    assert not np.asarray(lp["Dense_0"]["lora_b"]).any()
    lp = _randomize_b(lp, jax.random.key(2))
    t = lora.transform()
    merge = jax.jit(t.apply) if use_jit else t.apply
    merged = merge(lp, t.init(lp))
    assert sorted(merged["Dense_0"]) == ["bias", "kernel"]
    d0 = {k: np.asarray(v, np.float64) for k, v in lp["Dense_0"].items()}
    want = d0["kernel"] + 3.0 * d0["lora_a"] @ d0["lora_b"]
    np.testing.assert_allclose(merged["Dense_0"]["kernel"], want, atol=1e-6)
    np.testing.assert_array_equal(merged["Dense_1"]["kernel"], p["Dense_1"]["kernel"])
    x = np.asarray(jax.random.normal(jax.random.key(3), (5, 6)), np.float64)
    h = np.maximum(x @ d0["kernel"] + 3.0 * (x @ d0["lora_a"]) @ d0["lora_b"] + d0["bias"], 0)
    d1 = {k: np.asarray(v, np.float64) for k, v in p["Dense_1"].items()}
    unmerged = h @ d1["kernel"] + d1["bias"]
    out, _ = m.apply(merged, ms, jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(out, unmerged, atol=1e-5)
    np.testing.assert_allclose(lora.merge(lp)["Dense_0"]["kernel"], merged["Dense_0"]["kernel"],
                               atol=1e-6)


def test_gpt_attention_rule_and_function_unchanged_at_init():
    from jaxcomp.models import get_model

    m = get_model("gpt", input_shape=(16,), num_layers=2, width=64, num_heads=4, context=16)
    p, ms = m.init(jax.random.key(0), jnp.zeros((1, 16), jnp.int32))
    lp = lora.init_params(p, 4, where=r"blocks/.*/attn/(q|v)/kernel", key=jax.random.key(1))
    got = sorted(path for path, _, _ in lora.adapted(lp))
    assert got == [f"blocks/{i}/attn/{k}/kernel" for i in (0, 1) for k in ("q", "v")]
    t = lora.transform()
    toks = jax.random.randint(jax.random.key(2), (2, 16), 0, 256)
    ref, _ = m.apply(p, ms, toks)
    out, _ = jax.jit(lambda lp: m.apply(t.apply(lp, t.init(lp)), ms, toks))(lp)
    np.testing.assert_allclose(out, ref, atol=1e-6)      # B = 0: the base model
    n = lora.count_params(lp)
    assert n["trainable"] == 4 * (64 * 4 + 4 * 64)


def test_errors_name_rule_layer_value_and_range():
    _, p, _ = _linen()
    with pytest.raises(ConfigError, match=r"'Dense_9/kernel' matches no parameter path"):
        lora.init_params(p, 2, where="Dense_9/kernel", key=jax.random.key(0))
    with pytest.raises(ConfigError, match=r"Dense_1/kernel \(kernel \(16, 3\)\): got 4; "
                                          r"allowed an integer in \[1, 3\]"):
        lora.init_params(p, 4, key=jax.random.key(0))
    with pytest.raises(ConfigError, match=r"rank: got 0; allowed an integer in \[1, min"):
        lora.init_params(p, 0, key=jax.random.key(0))
    with pytest.raises(ConfigError, match="key"):
        lora.init_params(p, 2)
    with pytest.raises(ConfigError, match="no adapters"):
        lora.transform().init(p)
    with pytest.raises(ConfigError, match="shape"):
        lora.init_params({"c": {"kernel": jnp.ones((3, 3, 2, 4))}}, 1, key=jax.random.key(0))


def test_freeze_base_state_bytes_and_zero_updates():
    _, p, _ = _linen()
    lp = lora.init_params(p, 2, key=jax.random.key(1))
    tx = lora.freeze_base(optax.adam(1e-2))
    state = tx.init(lp)
    adapters = sum(x.nbytes for path, x in _flat(lp) if path.endswith(("lora_a", "lora_b")))
    assert lora.tree_bytes(state) == 2 * adapters + 4          # mu, nu, int32 count
    assert lora.tree_bytes(optax.adam(1e-2).init(lp)) > 2 * sum(x.nbytes for _, x in _flat(lp))
    grads = jax.tree.map(jnp.ones_like, lp)
    u, _ = jax.jit(tx.update)(grads, state, lp)
    for path, x in _flat(u):
        if path.endswith(("lora_a", "lora_b")):
            assert np.abs(np.asarray(x)).min() > 0, path
        else:
            assert not np.asarray(x).any(), path
    extra = lora.freeze_base(optax.sgd(0.1), extra=".*/bias").init(lp)
    assert jax.tree.leaves(extra) == [] or lora.tree_bytes(extra) == 0
    labels = lora.labels(lp, ".*/bias")
    assert labels["Dense_0"]["bias"] == "train" and labels["Dense_0"]["kernel"] == "frozen"


def _flat(tree):
    from jaxcomp.core import paths

    return paths.flatten(tree)


@pytest.mark.parametrize("use_jit", [True, False])
def test_pissa_init_keeps_function_and_takes_top_svd(use_jit):
    m, p, ms = _linen()
    lp = lora.init_params(p, 3, key=None, init="pissa", alpha=6.0)
    w = np.asarray(p["Dense_0"]["kernel"], np.float64)
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    d = lp["Dense_0"]
    delta = 2.0 * np.asarray(d["lora_a"], np.float64) @ np.asarray(d["lora_b"], np.float64)
    np.testing.assert_allclose(delta, (u[:, :3] * s[:3]) @ vt[:3], atol=1e-5)
    np.testing.assert_allclose(d["kernel"], w - delta, atol=1e-5)
    t = lora.transform()
    merge = jax.jit(t.apply) if use_jit else t.apply
    x = jax.random.normal(jax.random.key(3), (5, 6))
    out, _ = m.apply(merge(lp, t.init(lp)), ms, x)
    ref, _ = m.apply(p, ms, x)
    np.testing.assert_allclose(out, ref, atol=1e-5)


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 6)).astype(np.float32)
    w = rng.normal(size=(6, 3))
    y = np.argmax(x @ w, axis=1).astype(np.int32)
    return Dataset("toy", x[:192], y[:192], x[192:], y[192:], 3)


@pytest.mark.parametrize("make", [_linen, _nnx], ids=["linen", "nnx"])
def test_fit_trains_adapters_only(make):
    m, p, ms = make()
    ds = _data()
    lp = lora.init_params(p, 2, key=jax.random.key(1), alpha=4.0)
    t = lora.transform()
    tx = lora.freeze_base(optax.adam(3e-2))
    state = init_state(m, ds, tx, seed=0, transform=t, params=lp, model_state=ms)
    before = jax.tree.map(np.asarray, lp)
    loss0 = float(optax.softmax_cross_entropy_with_integer_labels(
        m.apply(t.apply(lp, ()), ms, jnp.asarray(ds.x_train))[0], ds.y_train).mean())
    r = fit(m, ds, tx, epochs=4, batch_size=32, transform=t, state=state, progress=False)
    assert r.history[-1]["train_loss"] < loss0 - 0.05
    after = r.state.params
    for path, x in _flat(before):
        y = _lookup(after, path)
        if path.endswith(("lora_a", "lora_b")):
            assert not np.array_equal(x, y), path
        else:
            assert np.array_equal(x, y) and x.tobytes() == np.asarray(y).tobytes(), path
    merged = lora.merge(after)
    out1, _ = m.apply(merged, ms, jnp.asarray(ds.x_test))
    out2, _ = m.apply(t.apply(after, ()), ms, jnp.asarray(ds.x_test))
    np.testing.assert_allclose(out1, out2, atol=1e-6)


def _lookup(tree, path):
    for k in path.split("/"):
        tree = tree[k] if k in tree else tree[int(k)]
    return np.asarray(tree)


def test_export_roundtrip(tmp_path):
    m, p, ms = _linen()
    lp = _randomize_b(lora.init_params(p, 2, key=jax.random.key(1)), jax.random.key(2))
    merged = lora.export(str(tmp_path / "merged"), lp)
    back = lora.restore(str(tmp_path / "merged"))
    assert jax.tree.structure(back) == jax.tree.structure(p)
    x = jnp.ones((2, 6))
    np.testing.assert_array_equal(m.apply(jax.tree.map(jnp.asarray, back), ms, x)[0],
                                  m.apply(merged, ms, x)[0])
