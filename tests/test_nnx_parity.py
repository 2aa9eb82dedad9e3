"""NNX parity: a user's own NNX ResNet (BatchNorm, a 1x1 projection shortcut) and its
linen twin with the same params give the same results through BatchNorm folding,
PTQ (weights + activations), integer inference, layer accounting and QAT."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxcomp.quant as jq
from jaxcomp.core.errors import ConfigError
from jaxcomp.decompose.accounting import layer_shapes, ledger, totals
from jaxcomp.flax.modules import batch_stats, pure_params
from jaxcomp.quant.ptq import layer_rules
from tests.resnet_twins import CLASSES, SHAPE, make_twins

# one worker runs this module (test.sh: --dist loadgroup): its module fixtures (the twins,
# about 20 s, and their PTQ, about 10 s) are built once, not on each worker
pytestmark = pytest.mark.xdist_group("nnx_parity")

LAYERS = ["stem_conv", "block0/conv1", "block0/conv2", "block1/conv1", "block1/conv2",
          "block1/proj_conv", "head"]
PAIRS = {"stem_conv": "stem_bn", "block0/conv1": "block0/bn1", "block0/conv2": "block0/bn2",
         "block1/conv1": "block1/bn1", "block1/conv2": "block1/bn2",
         "block1/proj_conv": "block1/proj_bn"}


@pytest.fixture(scope="module")
def twins():
    """``(nnx_model, nnx_params, nnx_state, linen_model, params, model_state, xs)``."""
    nmodel, n_params, n_state, lmodel, pp, l_state, x = make_twins()
    return nmodel, n_params, n_state, lmodel, pp, l_state, [x[:8], x[8:]]


def _close(a, b, atol=1e-5):
    a, b = pure_params(a), pure_params(b)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), atol=atol, rtol=1e-5)


def _apply(model, params, ms, x, use_jit, **kw):
    f = lambda p, s, xb: model.apply(p, s, xb, **kw)[0]
    return (jax.jit(f) if use_jit else f)(params, ms, x)


@pytest.mark.parametrize("use_jit", [False, True])
def test_twins_agree(twins, use_jit):
    nm, npar, nst, lm, lpar, lst, xs = twins
    np.testing.assert_allclose(_apply(nm, npar, nst, xs[0], use_jit),
                               _apply(lm, lpar, lst, xs[0], use_jit), atol=1e-5)
    _close(batch_stats(nst), lst["batch_stats"])


@pytest.mark.parametrize("use_jit", [False, True])
def test_fold_batchnorm(twins, use_jit):
    nm, npar, nst, lm, lpar, lst, xs = twins
    fn = jq.fold_batchnorm(nm, npar, nst, xs[0])
    fl = jq.fold_batchnorm(lm, lpar, lst, xs[0])
    assert fn.pairs == fl.pairs == PAIRS
    _close(fn.params, fl.params, atol=1e-6)
    assert "stem_bn" not in fn.params and "bias" in fn.params["block1"]["proj_conv"]
    ref = _apply(nm, npar, nst, xs[1], use_jit)
    yn = _apply(fn.model, fn.params, {}, xs[1], use_jit)
    np.testing.assert_allclose(yn, ref, atol=1e-5)
    np.testing.assert_allclose(yn, _apply(fl.model, fl.params, {}, xs[1], use_jit), atol=1e-5)
    # hand check of one fold: kernel * gamma / sqrt(var + eps)
    g = lpar["stem_bn"]["scale"] / np.sqrt(lst["batch_stats"]["stem_bn"]["var"] + 1e-5)
    np.testing.assert_allclose(fn.params["stem_conv"]["kernel"],
                               lpar["stem_conv"]["kernel"] * g, rtol=1e-5, atol=1e-6)


def _ptq(model, params, ms, xs, act_bits):
    return jq.ptq(model, params, ms, xs, bits=8, act_bits=act_bits)


@pytest.fixture(scope="module")
def ptq8(twins):
    """PTQ with 8-bit weights and activations (BatchNorm folded): ``(nnx, linen)``."""
    nm, npar, nst, lm, lpar, lst, xs = twins
    return _ptq(nm, npar, nst, xs, 8), _ptq(lm, lpar, lst, xs, 8)


@pytest.mark.parametrize("use_jit", [False, True])
def test_ptq_act8_folds_and_matches_linen(twins, ptq8, use_jit):
    nm, npar, nst, lm, lpar, lst, xs = twins
    qn, ql = ptq8
    assert qn.base.name.endswith("+bnfold")
    assert sorted(qn.model_state["act_quant"]) == sorted(LAYERS)
    _close(qn.params, ql.params, atol=1e-6)
    _close(qn.model_state["act_quant"], ql.model_state["act_quant"], atol=1e-5)
    yn = _apply(qn.model, qn.params, qn.model_state, xs[1], use_jit)
    yl = _apply(ql.model, ql.params, ql.model_state, xs[1], use_jit)
    np.testing.assert_allclose(yn, yl, atol=1e-5)
    y_float = _apply(nm, npar, nst, xs[1], use_jit)
    err = float(jnp.max(jnp.abs(yn - y_float)))
    assert 0 < err < 0.1 * float(jnp.max(jnp.abs(y_float)))  # quantized, and close


def test_ptq_act0_still_folds(twins):
    nm, npar, nst, lm, lpar, lst, xs = twins
    qn, ql = _ptq(nm, npar, nst, xs, 0), _ptq(lm, lpar, lst, xs, 0)
    assert qn.act is None and qn.base.name.endswith("+bnfold")
    assert "stem_bn" not in qn.float_params
    _close(qn.float_params, ql.float_params, atol=1e-6)
    np.testing.assert_allclose(qn.model.apply(qn.params, qn.model_state, xs[1])[0],
                               ql.model.apply(ql.params, ql.model_state, xs[1])[0], atol=1e-5)
    with pytest.raises(ConfigError, match="at least 1"):
        _ptq(nm, npar, nst, [], 0)  # folding needs a batch, and says so


@pytest.mark.parametrize("use_jit", [False, True])
def test_int_model(twins, ptq8, use_jit):
    xs = twins[-1]
    outs = []
    for q in ptq8:
        qt = jq.export_int(q.float_params, 8)
        im = jq.int_model(q.base, qt, q.model_state["act_quant"])
        weights, _ = im.init(None, None)
        y_int = _apply(im, weights, {}, xs[1], use_jit)
        y_fq = q.model.apply(q.params, q.model_state, xs[1])[0]
        np.testing.assert_allclose(y_int, y_fq, atol=1e-4)
        outs.append(y_int)
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-5)


def test_layer_shapes_and_ledger(twins):
    nm, npar, nst, lm, lpar, lst, _ = twins
    sn, sl = layer_shapes(nm, npar, nst, SHAPE), layer_shapes(lm, lpar, lst, SHAPE)
    assert sorted(sn) == sorted(LAYERS) and sn == sl
    assert sn["block1/proj_conv"] == {"type": "conv", "in": (1, 8, 8, 8), "out": (1, 4, 4, 16),
                                      "kernel": (1, 1, 8, 16), "strides": (2, 2),
                                      "padding": "SAME"}
    spec = {"block1/conv2": {"method": "tucker2", "rank": (4, 4)},
            "head": {"method": "svd", "rank": 2}}
    rn, rl = ledger(sn, spec), ledger(sl, spec)
    assert rn == rl
    t = totals(rn)
    stem = next(r for r in rn if r["path"] == "stem_conv")
    assert stem["params_before"] == 3 * 3 * 3 * 8 and stem["flops_before"] == 2 * 216 * 64
    head = next(r for r in rn if r["path"] == "head")
    assert (head["params_before"], head["params_after"]) == (16 * 4, 2 * (16 + 4))
    assert 0 < t["params_after"] < t["params_before"]


def test_unmatched_rule_names_nnx_paths(twins):
    nm, _, _, _, _, _, xs = twins
    aq = jq.act_quant(nm, ["stem_cnv"], bits=8)
    with pytest.raises(ConfigError, match="stem_conv"):
        aq.model.init(jax.random.key(0), xs[0])


@pytest.mark.parametrize("use_jit", [False, True])
def test_qat_with_activation_quant(twins, use_jit):
    """Two QAT steps (fake-quant weights and activations, BatchNorm in train mode)."""
    nm, npar, nst, lm, lpar, lst, xs = twins
    y = jnp.arange(8) % CLASSES
    results = []
    for model, params, ms in ((nm, npar, nst), (lm, lpar, lst)):
        aq = jq.act_quant(model, layer_rules(pure_params(params), 8), bits=8)
        _, ms0 = aq.model.init(jax.random.key(0), xs[0])
        ms = {**{k: v for k, v in ms.items()}, "act_quant": ms0["act_quant"]}
        t = jq.weight_quant(8)
        tstate = t.init(params)
        tx = optax.sgd(0.1)
        opt = tx.init(params)

        def step(p, ms, opt, xb, aq=aq, t=t, tstate=tstate, tx=tx):
            def loss(p):
                out, new_ms = aq.model.apply(t.apply(p, tstate), ms, xb, train=True)
                return optax.softmax_cross_entropy_with_integer_labels(out, y).mean(), new_ms
            (lv, new_ms), g = jax.value_and_grad(loss, has_aux=True)(p)
            upd, opt = tx.update(g, opt, p)
            return optax.apply_updates(p, upd), new_ms, opt, lv

        step = jax.jit(step) if use_jit else step
        losses = []
        for xb in xs:
            params, ms, opt, lv = step(params, ms, opt, xb)
            losses.append(float(lv))
        results.append((losses, params, ms))
    (ln, pn, mn), (ll, pl, ml) = results
    np.testing.assert_allclose(ln, ll, rtol=1e-5)
    _close(pn, pl, atol=1e-5)
    _close(batch_stats(mn), ml["batch_stats"], atol=1e-5)
    _close(mn["act_quant"], ml["act_quant"], atol=1e-5)
    assert int(mn["act_quant"]["head"]["count"]) == 2
