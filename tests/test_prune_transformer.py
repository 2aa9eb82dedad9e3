"""Structured pruning of the GPT (jaxcomp.prune.transformer): physical removal equals the
masked model, importance against a numpy reference, GQA consistency, training and
save/restore of the pruned module, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxcomp.core import paths
from jaxcomp.core.errors import ConfigError
from jaxcomp.models import get_model
from jaxcomp.models.gpt import GPT
from jaxcomp.models.gpt_target import resolve
from jaxcomp.models.lm import lm_loss
from jaxcomp.prune import transformer as tp
from jaxcomp.prune.groups import dependency_groups

CTX = 16
CONFIGS = {
    "gelu-learned-tied-mha": dict(mlp="gelu", positions="learned", tie_embeddings=True,
                                  num_heads=4),
    "swiglu-rope-untied-gqa": dict(mlp="swiglu", positions="rope", tie_embeddings=False,
                                   num_heads=4, num_kv_heads=2),
    "gelu-rope-tied-gqa1-bias": dict(mlp="gelu", positions="rope", tie_embeddings=True,
                                     num_heads=4, num_kv_heads=1, bias=True),
    "swiglu-learned-untied-bias": dict(mlp="swiglu", positions="learned", bias=True,
                                       tie_embeddings=False, num_heads=2),
}


def make(seed: int = 0, **kw):
    """A tiny GPT with random numpy params (model.init traced, not run: fast), non-trivial
    LayerNorm scales and biases so that every slice matters."""
    cfg = {"num_layers": 2, "width": 32, "context": CTX, **kw}
    model = get_model("gpt", input_shape=(CTX,), **cfg)
    params, ms = jax.eval_shape(model.init, jax.random.key(0), None)
    rng = np.random.default_rng(seed)

    def fill(path, a):
        z = rng.normal(size=a.shape).astype(np.float32)
        if path.endswith("scale"):
            return 1.0 + 0.2 * z
        if path.endswith("kernel"):
            return z / np.sqrt(a.shape[0])
        return 0.5 * z if path.endswith("embedding") else 0.1 * z

    pure = paths.map_with_path(fill, nnx.to_pure_dict(params))
    nnx.replace_by_pure_dict(params, jax.tree.map(jnp.asarray, pure))
    return model, params, ms


def tokens(n: int = 8, t: int = CTX, seed: int = 0) -> jax.Array:
    return jax.random.randint(jax.random.key(seed), (n, t), 0, 256)


def logits_of(small: tp.Pruned, x, jit: bool) -> np.ndarray:
    fn = lambda p, s, v: small.model.apply(p, s, v)[0]
    return np.asarray((jax.jit(fn) if jit else fn)(small.params, small.model_state, x))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_width_pruned_equals_masked(name):
    kw = CONFIGS[name]
    model, params, _ = make(**kw)
    x = tokens()
    imp = tp.importance(model, params, x, batch_size=4)   # two batches
    heads = kw["num_heads"] // 2 if kw.get("num_kv_heads", kw["num_heads"]) > 1 else None
    small = tp.prune_width(model, params, imp, num_heads=heads, mlp_hidden=40, width=20)
    ref = np.asarray(tp.masked_forward(model, params, small.kept, x))
    for jit in (False, True) if name == "gelu-learned-tied-mha" else (True,):
        np.testing.assert_allclose(logits_of(small, x, jit), ref, atol=1e-5, rtol=1e-5)
    assert small.config["width"] == 20 and small.config["mlp_hidden"] == 40
    assert small.config["head_dim"] == 32 // kw["num_heads"]
    assert small.params_after < small.params_before
    assert small.params_after == sum(a.size for a in jax.tree.leaves(small.params))
    json.dumps(small.kept)                                  # JSON-able
    gpt = small.module()
    assert isinstance(gpt, GPT) and gpt.blocks[0].mlp.up.kernel.shape == (20, 40)
    np.testing.assert_allclose(np.asarray(gpt(x)), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["gelu-learned-tied-mha", "swiglu-rope-untied-gqa"])
def test_heads_neurons_blocks_are_exactly_zeroing(name):
    """Without channel removal the masked model is model.apply on masked_params."""
    model, params, ms = make(**CONFIGS[name])
    x = tokens(4)
    imp = tp.importance(model, params, None, method="random", seed=3)
    small = tp.prune_width(model, params, imp, num_kv_heads=1, mlp_hidden=24)
    small = tp.apply_kept(model, params, {**small.kept, "blocks": [1]})
    mp = tp.masked_params(model, params, small.kept)
    assert isinstance(mp, nnx.State)
    full = np.asarray(model.apply(mp, ms, x)[0])
    np.testing.assert_allclose(logits_of(small, x, True), full, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(tp.masked_forward(model, params, small.kept, x)),
                               full, atol=1e-5, rtol=1e-5)
    assert small.config["num_layers"] == 1 and small.config["num_kv_heads"] == 1


def test_channel_masked_layernorm_is_needed():
    """Zeroing residual channels alone does not give the pruned model (LayerNorm statistics
    run over all channels); the masked LayerNorm does."""
    model, params, ms = make(**CONFIGS["gelu-learned-tied-mha"])
    x = tokens(4)
    small = tp.apply_kept(model, params, {"channels": list(range(0, 32, 2))})
    zeroed_only = np.asarray(model.apply(tp.masked_params(model, params, small.kept), ms, x)[0])
    out = logits_of(small, x, False)
    assert np.max(np.abs(out - zeroed_only)) > 1e-2
    np.testing.assert_allclose(out, np.asarray(tp.masked_forward(model, params, small.kept, x)),
                               atol=1e-5, rtol=1e-5)


def test_gqa_groups_stay_consistent():
    model, params, _ = make(num_heads=8, num_kv_heads=4)
    x = tokens(4)
    imp = tp.importance(model, params, x)
    whole = tp.prune_width(model, params, imp, num_heads=4)     # whole groups of 2
    assert (whole.config["num_heads"], whole.config["num_kv_heads"]) == (4, 2)
    for i in ("0", "1"):
        kv, h = whole.kept["kv_heads"][i], whole.kept["heads"][i]
        assert h == [q for k in kv for q in (2 * k, 2 * k + 1)]
        top = np.argsort(-imp.kv_groups[int(i)])[:2]
        assert kv == sorted(top.tolist())
    inside = tp.prune_width(model, params, imp, num_heads=4, num_kv_heads=4)  # 1 of 2 per group
    assert inside.config["num_kv_heads"] == 4
    for i in ("0", "1"):
        h = inside.kept["heads"][i]
        assert [q // 2 for q in h] == [0, 1, 2, 3]
        assert all(imp.heads[int(i), q] >= imp.heads[int(i), q ^ 1] for q in h)
    for small in (whole, inside):
        np.testing.assert_allclose(logits_of(small, x, True),
                                   np.asarray(tp.masked_forward(model, params, small.kept, x)),
                                   atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(imp.kv_groups, imp.heads.reshape(2, 4, 2).sum(-1), rtol=1e-6)


def _np_ln(x, p, eps=1e-6):
    x = x - x.mean(-1, keepdims=True)
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * np.asarray(p["scale"]) + \
        np.asarray(p["bias"])


def test_activation_importance_matches_numpy():
    """Layer 0's head, neuron and (partial) channel scores from a numpy forward."""
    model, params, _ = make(num_heads=4)
    x = np.asarray(tokens(3))
    imp = tp.importance(model, params, x, batch_size=2)
    p = nnx.to_pure_dict(params)
    b0, a = p["blocks"][0], p["blocks"][0]["attn"]
    h0 = np.asarray(p["embed"]["embedding"])[x] + np.asarray(p["pos"]["embedding"])[:CTX]
    a0 = _np_ln(h0, b0["ln1"])
    q, k, v = (a0 @ np.asarray(a[n]["kernel"]) for n in "qkv")
    q, k, v = (t.reshape(3, CTX, 4, 8) for t in (q, k, v))
    s = np.einsum("bthd,bshd->bhts", q, k) / np.sqrt(8)
    s = np.where(np.tril(np.ones((CTX, CTX), bool)), s, -np.inf)
    w = np.exp(s - s.max(-1, keepdims=True))
    u = np.einsum("bhts,bshd->bthd", w / w.sum(-1, keepdims=True), v)
    np.testing.assert_allclose(imp.heads[0], np.linalg.norm(u, axis=-1).mean((0, 1)),
                               rtol=1e-4)
    h1 = h0 + u.reshape(3, CTX, 32) @ np.asarray(a["o"]["kernel"])
    z = _np_ln(h1, b0["ln2"]) @ np.asarray(b0["mlp"]["up"]["kernel"])
    act = 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z ** 3)))
    np.testing.assert_allclose(imp.neurons[0], np.abs(act).mean((0, 1)), rtol=1e-4,
                               atol=1e-7)
    h2 = h1 + act @ np.asarray(b0["mlp"]["down"]["kernel"])
    cos = (h0 * h2).sum(-1) / np.linalg.norm(h0, axis=-1) / np.linalg.norm(h2, axis=-1)
    np.testing.assert_allclose(imp.blocks[0], 1 - cos.mean(), rtol=1e-3, atol=1e-6)
    assert imp.channels.shape == (32,) and np.all(imp.channels > np.abs(a0).mean((0, 1)))


def test_neuron_groups_agree_with_dependency_groups():
    """The jaxpr analysis finds the MLP neuron groups by itself; ours have its members."""
    model, params, ms = make(mlp="swiglu", num_heads=4)
    found = dependency_groups(model, params, ms, tokens(1))
    ours = tp.gpt_graph(resolve(model, params).config)
    for i in range(2):
        want = {(m.path, m.axis) for m in found.groups[f"blocks/{i}/mlp/gate/kernel"].members}
        got = {(m.path, m.axis) for m in ours.groups[f"blocks/{i}/mlp/neurons"].members}
        assert want == got


@pytest.mark.parametrize("method", ["loss", "cosine", "random", "last"])
def test_prune_depth(method):
    model, params, _ = make(num_heads=4)
    model3 = get_model("gpt", input_shape=(CTX,), num_layers=3, width=32, context=CTX)
    params3, _ = model3.init(jax.random.key(1), None)
    x = tokens(4)
    small = tp.prune_depth(model3, params3, x, num_layers=2, method=method, seed=1)
    assert small.config["num_layers"] == 2 and len(small.kept["blocks"]) == 2
    np.testing.assert_allclose(logits_of(small, x, False),
                               np.asarray(tp.masked_forward(model3, params3, small.kept, x)),
                               atol=1e-5, rtol=1e-5)
    if method == "last":
        assert small.kept["blocks"] == [0, 1]
    if method == "loss":
        scores = tp.block_importance(model3, params3, x, method="loss")
        assert small.kept["blocks"] == sorted(np.argsort(-scores)[:2].tolist())


def test_block_loss_importance_is_the_loss_increase():
    model, params, ms = make(num_heads=4)
    x = tokens(4)
    scores = tp.block_importance(model, params, x, method="loss")
    base = float(lm_loss(model.apply(params, ms, x[:, :-1])[0], {"y": x[:, 1:]})[0])
    skip0 = tp.apply_kept(model, params, {"blocks": [1]})
    got = float(lm_loss(skip0.model.apply(skip0.params, skip0.model_state, x[:, :-1])[0],
                        {"y": x[:, 1:]})[0])
    np.testing.assert_allclose(scores[0], got - base, rtol=1e-4, atol=1e-6)


def test_nnx_module_input_and_training_continues():
    gpt = GPT(num_layers=2, width=32, num_heads=4, num_kv_heads=2, context=CTX,
              positions="rope", mlp="swiglu", rngs=nnx.Rngs(0))
    data = np.frombuffer(b"the quick brown fox jumps over the lazy dog. " * 40, np.uint8)
    x = jnp.asarray(data[: 8 * (CTX + 1)].reshape(8, CTX + 1).astype(np.int32))
    imp = tp.importance(gpt, None, x[:, :CTX])
    small = tp.prune_width(gpt, None, imp, num_heads=2, mlp_hidden=32, width=24)
    mod = small.module()
    assert mod.blocks[0].attn.q.kernel.shape == (24, 16)
    graphdef, p, rest = nnx.split(mod, nnx.Param, ...)
    loss = lambda p: lm_loss(nnx.merge(graphdef, p, rest)(x[:, :-1]), {"y": x[:, 1:]})[0]
    tx = optax.adam(1e-2)
    opt = tx.init(p)

    @jax.jit
    def step(p, opt):
        val, g = jax.value_and_grad(loss)(p)
        upd, opt = tx.update(g, opt, p)
        return optax.apply_updates(p, upd), opt, val

    losses = []
    for _ in range(15):
        p, opt, val = step(p, opt)
        losses.append(float(val))
    assert losses[-1] < 0.8 * losses[0]


def test_save_restore_in_a_fresh_process(tmp_path):
    model, params, _ = make(**CONFIGS["swiglu-rope-untied-gqa"])
    x = tokens(2)
    imp = tp.importance(model, params, x)
    small = tp.prune_width(model, params, imp, num_heads=2, mlp_hidden=24, width=20)
    tp.save_pruned(str(tmp_path / "ck"), small)
    np.save(tmp_path / "x.npy", np.asarray(x))
    np.save(tmp_path / "ref.npy", logits_of(small, x, False))
    code = ("import sys, numpy as np; from jaxcomp.prune import transformer as tp; "
            "d = sys.argv[1]; r = tp.load_pruned(d + '/ck'); "
            "y = np.asarray(r.module()(np.load(d + '/x.npy'))); "
            "print(float(np.max(np.abs(y - np.load(d + '/ref.npy')))), r.config['width'])")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    diff, width = out.stdout.split()
    assert float(diff) == 0.0 and width == "20"


def _bad_cases():
    model, params, _ = make(num_heads=4, num_kv_heads=2)
    other, oparams, _ = make(num_heads=4, num_kv_heads=2, mlp_hidden=64)
    x = tokens(2)
    imp = tp.importance(model, params, None, method="random")
    pw = lambda **kw: tp.prune_width(model, params, imp, **kw)
    return [
        ("heads0", lambda: pw(num_heads=0), r"prune_width\.num_heads: got 0; allowed .*1\.\.4"),
        ("heads-odd", lambda: pw(num_heads=3), r"num_heads: got 3; .*groups of 2.*\[2, 4\]"),
        ("heads-many", lambda: pw(num_heads=8), r"num_heads: got 8; allowed .*1\.\.4"),
        ("kv-ratio", lambda: pw(num_heads=3, num_kv_heads=2), r"num_heads: got 3 with "
         r"num_kv_heads=2.*allowed \[2, 4\]"),
        ("kv-big", lambda: pw(num_kv_heads=3), r"num_kv_heads: got 3; allowed .*1\.\.2"),
        ("width-big", lambda: pw(width=64), r"prune_width\.width: got 64; allowed .*1\.\.32"),
        ("width-float", lambda: pw(width=16.0), r"width: got 16\.0; allowed an integer"),
        ("hidden-big", lambda: pw(mlp_hidden=999), r"mlp_hidden: got 999; allowed .*1\.\.128"),
        ("depth0", lambda: tp.prune_depth(model, params, x, num_layers=0),
         r"prune_depth\.num_layers: got 0; allowed .*1\.\.2"),
        ("depth-big", lambda: tp.prune_depth(model, params, x, num_layers=3),
         r"num_layers: got 3; allowed .*1\.\.2"),
        ("depth-method", lambda: tp.prune_depth(model, params, x, num_layers=1,
                                                method="lossy"), r"prune_depth\.method"),
        ("imp-method", lambda: tp.importance(model, params, x, method="taylor"),
         r"importance\.method"),
        ("tok-rank", lambda: tp.importance(model, params, x[0]), r"calib_tokens: got shape "
         r"\(16,\); expected \(N, T\)"),
        ("tok-dtype", lambda: tp.importance(model, params, x * 1.0), r"dtype float32; "
         r"expected integer"),
        ("tok-vocab", lambda: tp.importance(model, params, x + 300), r"token ids span .*; "
         r"allowed 0\.\.255"),
        ("tok-long", lambda: tp.importance(model, params, tokens(1, 2 * CTX)),
         r"sequence length 32; allowed 1\.\.16"),
        ("tok-short-loss", lambda: tp.prune_depth(model, params, x[:, :1], num_layers=1),
         r"sequence length 1; allowed 2\.\.16"),
        ("imp-other", lambda: tp.prune_width(other, oparams, imp, width=8),
         r"importance\.neurons: shape \(2, 128\); this model needs \(2, 64\)"),
        ("imp-type", lambda: tp.prune_width(model, params, {"heads": 1}),
         r"importance: got dict; expected the Importance"),
        ("params-other", lambda: tp.importance(model, oparams, x), r"params do not fit"),
        ("linen", lambda: tp.importance(get_model("mlp", input_shape=(4,)), params, x),
         r"importance\.model: got 'mlp'; expected the Model of get_model\('gpt'"),
        ("not-gpt", lambda: tp.importance(get_model("nnx_mlp", input_shape=(4,)), params, x),
         r"importance\.model: 'nnx_mlp' builds a NNXMLP, not a jaxcomp\.models\.gpt\.GPT"),
        ("kept-orphan", lambda: tp.apply_kept(model, params, {"heads": {"0": [0, 1]},
                                                              "kv_heads": {"0": [1]}}),
         r"kept\['heads'\]\['0'\].*group"),
        ("kept-range", lambda: tp.apply_kept(model, params, {"channels": [0, 40]}),
         r"kept\['channels'\]: indices 0\.\.40; allowed 0\.\.31"),
        ("kept-empty", lambda: tp.apply_kept(model, params, {"blocks": []}),
         r"kept\['blocks'\]: keeps nothing"),
        ("kept-uneven", lambda: tp.apply_kept(model, params, {"neurons": {"0": [0, 1]}}),
         r"kept\['neurons'\]: the kept blocks keep \[2, 128\]"),
        ("kept-kind", lambda: tp.apply_kept(model, params, {"layers": [0]}),
         r"kept: unknown keys \['layers'\]"),
    ]


def test_bad_input():
    for name, fn, rx in _bad_cases():
        with pytest.raises(ConfigError, match=rx):
            fn()
            pytest.fail(f"{name}: no error")


def test_gpt_head_dim_keyword():
    """A GPT whose heads do not tile its width (what width pruning produces)."""
    gpt = GPT(num_layers=1, width=20, num_heads=2, head_dim=8, context=8, positions="rope",
              rngs=nnx.Rngs(0))
    assert gpt.blocks[0].attn.q.kernel.shape == (20, 16)
    assert gpt(jnp.zeros((1, 8), jnp.int32)).shape == (1, 8, 256)
    with pytest.raises(ConfigError, match=r"model\.head_dim: got 0; must be None or an "
                                          r"integer >= 1"):
        GPT(num_layers=1, width=20, num_heads=2, head_dim=0, rngs=nnx.Rngs(0))
    with pytest.raises(ConfigError, match=r"even head dimension; got head_dim = 5"):
        GPT(num_layers=1, width=20, num_heads=2, head_dim=5, positions="rope",
            rngs=nnx.Rngs(0))
    with pytest.raises(ConfigError, match=r"prune_depth\.calib_tokens: got shape \(\)"):
        tp.prune_depth(gpt, None, None, num_layers=1, method="cosine")


def test_load_pruned_bad_directory(tmp_path):
    with pytest.raises(ConfigError, match=r"load_pruned\.directory: .* no structure\.json"):
        tp.load_pruned(str(tmp_path))
