"""Drop-in quantized modules (linen and NNX) against the functional path
(act_quant + weight_quant), and plain user training loops over them."""

from __future__ import annotations

import inspect

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from flax.training import train_state

from jaxcomp.core.errors import ConfigError
from jaxcomp.flax import from_linen
from jaxcomp.models import MLP, NNXMLP
from jaxcomp.quant import QuantStat, act_quant, act_quant_nnx, quantize_module, weight_quant

KEY = jax.random.key(0)
X = jax.random.normal(jax.random.key(1), (16, 6))
X2 = 2.0 * jax.random.normal(jax.random.key(2), (16, 6))
Y = jnp.argmax(X[:, :3], axis=1)


def _functional(aq, params, ms, x, train):
    t = weight_quant(8)
    return aq.model.apply(t.apply(params, t.init(params)), ms, x, train=train)


def _close(a, b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("use_jit", [False, True])
def test_linen_matches_functional_path_train_then_eval(use_jit):
    base = MLP((16, 8), 3)
    aq = act_quant(from_linen(base), ["Dense_.*"], 8)
    params, ms = aq.model.init(KEY, X[:1])
    q = quantize_module(base, ["Dense_.*"])
    v = q.init(KEY, X[:1])
    assert jax.tree.structure(v["params"]) == jax.tree.structure(params)
    train = lambda p, s, x: q.apply({"params": p, "quant_stats": s}, x, mutable=["quant_stats"])
    ev = lambda p, s, x: q.apply({"params": p, "quant_stats": s}, x)
    if use_jit:
        train, ev = jax.jit(train), jax.jit(ev)
    s = v["quant_stats"]
    for x in (X, X2):  # two training steps: the EMA moves the ranges
        out_f, ms = _functional(aq, params, ms, x, True)
        out_d, upd = train(params, s, x)
        s = upd["quant_stats"]
        _close(out_d, out_f)
        for layer in ("Dense_0", "Dense_1", "Dense_2"):
            for k in ("lo", "hi"):
                _close(s[layer][k], ms["act_quant"][layer][k])
            assert int(s[layer]["count"]) == int(ms["act_quant"][layer]["count"])
    assert int(s["Dense_0"]["count"]) == 2
    assert float(s["Dense_0"]["lo"]) == pytest.approx(
        0.9 * float(X.min()) + 0.1 * float(X2.min()), rel=1e-6)
    out_f, _ = _functional(aq, params, ms, 3 * X, False)
    _close(ev(params, s, 3 * X), out_f)  # eval: frozen ranges clip 3*X


def test_linen_keeps_signature_params_and_freezes_without_mutable():
    base = MLP((8,), 3)
    q = quantize_module(base, "Dense_0")
    assert inspect.signature(q.__call__) == inspect.signature(base.__call__)
    assert isinstance(q, MLP)
    v = q.init(KEY, X[:1])
    assert list(v["quant_stats"]) == ["Dense_0"]  # Dense_1 not selected
    vb = base.init(KEY, X[:1])
    assert jax.tree.all(jax.tree.map(lambda a, b: bool((a == b).all()), v["params"],
                                     vb["params"]))
    out, upd = q.apply(v, X, mutable=["quant_stats"])
    assert int(upd["quant_stats"]["Dense_0"]["count"]) == 1
    out2 = q.apply({"params": v["params"], **upd}, X)  # frozen: no update possible
    _close(out2, out)
    # weights are really quantized: the output differs from the float model's
    assert float(jnp.abs(out - base.apply(vb, X)).max()) > 1e-5


def test_linen_excluded_layers_and_separate_bits():
    q = quantize_module(MLP((8,), 3), ["!Dense_1", ("Dense_0", (4, None))])
    v = q.init(KEY, X[:1])
    assert "quant_stats" not in v  # no activation quantized
    w = v["params"]["Dense_0"]["kernel"]
    h = jnp.maximum(X @ weight_quant(4).apply({"k": w}, weight_quant(4).init({"k": w}))["k"]
                    + v["params"]["Dense_0"]["bias"], 0.0)
    want = h @ v["params"]["Dense_1"]["kernel"] + v["params"]["Dense_1"]["bias"]
    _close(q.apply(v, X), want)


def _make_nnx(rngs):
    return NNXMLP(6, (16, 8), 3, rngs=rngs)


@pytest.mark.parametrize("use_jit", [False, True])
def test_nnx_matches_functional_path_train_then_eval(use_jit):
    aq = act_quant_nnx(_make_nnx, ["layers/.*"], 8)
    params, ms = aq.model.init(KEY, X[:1])
    params = nnx.to_pure_dict(params)
    model = quantize_module(_make_nnx(nnx.Rngs(params=KEY, dropout=KEY)), ["layers/.*"])
    call = nnx.jit(lambda m, x: m(x)) if use_jit else (lambda m, x: m(x))
    for x in (X, X2):
        out_f, ms = _functional(aq, params, ms, x, True)
        _close(call(model, x), out_f)
        for i in range(3):
            st = ms["act_quant"][f"layers/{i}"]
            _close(model.layers[i].act_lo[...], st["lo"])
            _close(model.layers[i].act_hi[...], st["hi"])
            assert int(model.layers[i].act_count[...]) == int(st["count"])
    model.eval()
    out_f, _ = _functional(aq, params, ms, 3 * X, False)
    _close(call(model, 3 * X), out_f)
    assert int(model.layers[0].act_count[...]) == 2  # eval: frozen
    model.train()
    call(model, X)
    assert int(model.layers[0].act_count[...]) == 3
    # the kernels were restored after each call (float weights are what the optimizer sees)
    _close(model.layers[0].kernel[...], params["layers"][0]["kernel"])


def _xent(logits, y):
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def test_plain_nnx_training_loop_runs_unchanged_and_stats_not_optimized():
    model = quantize_module(_make_nnx(nnx.Rngs(0)), ".*")
    opt = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    plain_opt = nnx.Optimizer(_make_nnx(nnx.Rngs(0)), optax.adam(1e-2), wrt=nnx.Param)
    assert len(jax.tree.leaves(nnx.state(opt))) == len(jax.tree.leaves(nnx.state(plain_opt)))

    @nnx.jit
    def step(model, opt, x, y):
        loss, grads = nnx.value_and_grad(lambda m: _xent(m(x), y))(model)
        opt.update(model, grads)
        return loss

    losses = [float(step(model, opt, X, Y)) for _ in range(30)]
    assert losses[-1] < 0.7 * losses[0]
    assert int(model.layers[0].act_count[...]) == 30
    # the input layer's range is the data's (EMA of a constant batch); never moved by Adam
    assert float(model.layers[0].act_lo[...]) == pytest.approx(float(X.min()), rel=1e-5)
    assert len(jax.tree.leaves(nnx.state(model, QuantStat))) == 9


def test_plain_linen_training_loop_runs_unchanged():
    q = quantize_module(MLP((16,), 3), ".*")
    v = q.init(KEY, X[:1])
    state = train_state.TrainState.create(apply_fn=q.apply, params=v["params"],
                                          tx=optax.adam(1e-2))
    stats = v["quant_stats"]

    @jax.jit
    def step(state, stats, x, y):
        def loss_fn(p):
            logits, upd = state.apply_fn({"params": p, "quant_stats": stats}, x,
                                         mutable=["quant_stats"])
            return _xent(logits, y), upd["quant_stats"]
        (loss, stats), g = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        return state.apply_gradients(grads=g), stats, loss

    losses = []
    for _ in range(30):
        state, stats, loss = step(state, stats, X, Y)
        losses.append(float(loss))
    assert losses[-1] < 0.7 * losses[0]
    assert int(stats["Dense_1"]["count"]) == 30


def test_rules_that_match_nothing_name_nearest_paths():
    with pytest.raises(ConfigError, match=r"'Dense_9'.*Dense_0"):
        quantize_module(MLP((8,), 3), ["Dense_0", "Dense_9"]).init(KEY, X[:1])
    with pytest.raises(ConfigError, match=r"'layer/0'.*layers/0"):
        quantize_module(_make_nnx(nnx.Rngs(0)), ["layer/0"])
    with pytest.raises(ConfigError, match="act_bits"):
        quantize_module(MLP(), act_bits=9)
    with pytest.raises(ConfigError, match="momentum"):
        quantize_module(MLP(), momentum=1.5)
    with pytest.raises(ConfigError, match="linen.Module or an nnx.Module"):
        quantize_module(lambda x: x)
    m = quantize_module(_make_nnx(nnx.Rngs(0)))
    with pytest.raises(ConfigError, match="already quantized"):
        quantize_module(m)


def test_linen_apply_without_stats_is_a_clear_error():
    q = quantize_module(MLP((8,), 3))
    v = q.init(KEY, X[:1])
    with pytest.raises(ConfigError, match="quant_stats"):
        q.apply({"params": v["params"]}, X)


def test_linen_nested_module_paths_are_relative():
    class Outer(nn.Module):
        def setup(self):
            self.mlp = quantize_module(MLP((8,), 3), "Dense_0", act_bits=None)

        def __call__(self, x):
            return self.mlp(x)

    v = Outer().init(KEY, X[:1])
    k = v["params"]["mlp"]["Dense_0"]["kernel"]
    h = jnp.maximum(X @ weight_quant(8).apply({"k": k}, weight_quant(8).init({"k": k}))["k"]
                    + v["params"]["mlp"]["Dense_0"]["bias"], 0.0)
    p1 = v["params"]["mlp"]["Dense_1"]
    _close(Outer().apply(v, X), h @ p1["kernel"] + p1["bias"])
