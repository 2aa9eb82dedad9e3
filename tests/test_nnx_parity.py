"""NNX parity: a user's own NNX ResNet (BatchNorm, a 1x1 projection shortcut) and its
linen twin with the same params give the same results through BatchNorm folding,
PTQ (weights + activations), integer inference, layer accounting and QAT."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxcomp.quant as jq
from jaxcomp.core.errors import ConfigError
from jaxcomp.decompose.accounting import layer_shapes, ledger, totals
from jaxcomp.flax import from_linen, from_nnx
from jaxcomp.flax.modules import batch_stats, pure_params
from jaxcomp.quant.ptq import layer_rules

SHAPE, CLASSES = (8, 8, 3), 4
LAYERS = ["stem_conv", "block0/conv1", "block0/conv2", "block1/conv1", "block1/conv2",
          "block1/proj_conv", "head"]
PAIRS = {"stem_conv": "stem_bn", "block0/conv1": "block0/bn1", "block0/conv2": "block0/bn2",
         "block1/conv1": "block1/bn1", "block1/conv2": "block1/bn2",
         "block1/proj_conv": "block1/proj_bn"}


# ------------------------------------------------------------------ the user's models
class NBlock(nnx.Module):
    def __init__(self, cin, cout, stride, rngs):
        self.conv1 = nnx.Conv(cin, cout, (3, 3), strides=stride, use_bias=False, rngs=rngs)
        self.bn1 = nnx.BatchNorm(cout, momentum=0.9, rngs=rngs)
        self.conv2 = nnx.Conv(cout, cout, (3, 3), use_bias=False, rngs=rngs)
        self.bn2 = nnx.BatchNorm(cout, momentum=0.9, rngs=rngs)
        self.proj = cin != cout or stride != 1
        if self.proj:
            self.proj_conv = nnx.Conv(cin, cout, (1, 1), strides=stride, use_bias=False,
                                      rngs=rngs)
            self.proj_bn = nnx.BatchNorm(cout, momentum=0.9, rngs=rngs)

    def __call__(self, x):
        h = nnx.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        sc = self.proj_bn(self.proj_conv(x)) if self.proj else x
        return nnx.relu(h + sc)


class NResNet(nnx.Module):
    def __init__(self, rngs):
        self.stem_conv = nnx.Conv(3, 8, (3, 3), use_bias=False, rngs=rngs)
        self.stem_bn = nnx.BatchNorm(8, momentum=0.9, rngs=rngs)
        self.block0 = NBlock(8, 8, 1, rngs)
        self.block1 = NBlock(8, 16, 2, rngs)
        self.head = nnx.Linear(16, CLASSES, rngs=rngs)

    def __call__(self, x):
        x = nnx.relu(self.stem_bn(self.stem_conv(x)))
        x = self.block1(self.block0(x))
        return self.head(x.mean(axis=(1, 2)))


class LBlock(nn.Module):
    cout: int
    stride: int

    @nn.compact
    def __call__(self, x, train):
        bn = lambda name: nn.BatchNorm(use_running_average=not train, momentum=0.9, name=name)
        h = nn.Conv(self.cout, (3, 3), self.stride, use_bias=False, name="conv1")(x)
        h = nn.relu(bn("bn1")(h))
        h = bn("bn2")(nn.Conv(self.cout, (3, 3), use_bias=False, name="conv2")(h))
        sc = x
        if x.shape[-1] != self.cout or self.stride != 1:
            sc = nn.Conv(self.cout, (1, 1), self.stride, use_bias=False, name="proj_conv")(x)
            sc = bn("proj_bn")(sc)
        return nn.relu(h + sc)


class LResNet(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(8, (3, 3), use_bias=False, name="stem_conv")(x)
        x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9,
                                 name="stem_bn")(x))
        x = LBlock(8, 1, name="block0")(x, train)
        x = LBlock(16, 2, name="block1")(x, train)
        return nn.Dense(CLASSES, name="head")(x.mean(axis=(1, 2)))


def _perturb(tree, key):
    """Non-trivial BatchNorm scales, shifts and running statistics."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    out = []
    for i, (path, v) in enumerate(leaves):
        name = str(path[-1].key)
        k = jax.random.fold_in(key, i)
        if name in ("scale", "var"):
            v = jax.random.uniform(k, v.shape, minval=0.5, maxval=1.5)
        elif name == "mean" or (name == "bias" and "bn" in str(path[-2].key)):
            v = 0.3 * jax.random.normal(k, v.shape)
        out.append(v)
    return jax.tree_util.tree_unflatten(treedef, out)


@pytest.fixture(scope="module")
def twins():
    """``(nnx_model, nnx_params, nnx_state, linen_model, params, model_state, xs)``."""
    nmodel = from_nnx(NResNet, name="nresnet")
    n_params, n_state = nmodel.init(jax.random.key(0), None)
    pp = _perturb(nnx.to_pure_dict(n_params), jax.random.key(1))
    ps = _perturb(nnx.to_pure_dict(n_state), jax.random.key(2))
    nnx.replace_by_pure_dict(n_params, pp)
    nnx.replace_by_pure_dict(n_state, ps)
    lmodel = from_linen(LResNet())
    x = jax.random.normal(jax.random.key(3), (16, *SHAPE))
    l_params, l_state = lmodel.init(jax.random.key(0), x[:1])
    assert jax.tree.structure(l_params) == jax.tree.structure(pp)  # the same names
    l_state = {"batch_stats": ps}
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
