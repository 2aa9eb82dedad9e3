"""A bad-input corpus over the public Python API of every family (issue #16).

Each case is a callable doing one bad thing, the exception type it must raise and a
regex its message must match (the parameter name or path, and the allowed range or the
reason). The test refuses a silent success, a bare ``KeyError``/``AttributeError``/
``IndexError`` and any exception raised from JAX's own modules. Numeric parameters get a
generic battery (negative, too large, NaN, inf, text, ``None``, a list) where those are bad.

``tests/test_bad_inputs.py`` holds the older corpus (configs, CLI, checkpoints, sweeps).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcomp.core.errors import ConfigError

# ------------------------------------------------------------------ fixtures (small, shared)
W = jnp.arange(1.0, 13.0).reshape(4, 3)
P = {"Dense_0": {"kernel": W, "bias": jnp.zeros(3)},
     "Dense_1": {"kernel": jnp.arange(1.0, 7.0).reshape(3, 2), "bias": jnp.zeros(2)}}
P8 = {"Dense_0": {"kernel": jnp.arange(1.0, 33.0).reshape(4, 8)}}
P_MISSING = {"Dense_0": P["Dense_0"]}
P_T = {"Dense_0": {"kernel": W.T, "bias": jnp.zeros(3)}, "Dense_1": P["Dense_1"]}
K4 = jax.random.normal(jax.random.key(0), (3, 3, 8, 8))
L = jnp.array([[1.0, 2.0, 0.5], [0.1, 0.2, 3.0], [2.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
Y = jnp.array([0, 2, 1, 1])
KEY = jax.random.key(0)
NAN_W = jnp.array([[1.0, jnp.nan], [2.0, 3.0]])
INF_W = jnp.array([[1.0, jnp.inf], [2.0, 3.0]])

# what each battery entry passes
BAD = {"neg": -1.5, "negint": -1, "zero": 0, "big": 1e9, "one": 1.0, "frac": 2.5,
       "nan": float("nan"), "inf": float("inf"), "str": "0.5", "none": None,
       "list": [0.5, 0.5], "obj": object()}
FLOAT01 = ("neg", "big", "nan", "inf", "str", "none", "list", "obj")   # a number in a range
POS_FLOAT = ("neg", "zero", "nan", "inf", "str", "none", "list")       # a number > 0
POS_INT = ("negint", "zero", "frac", "nan", "str", "none", "list")    # an integer >= 1
REASON = r"(allowed|expected|need|must|not|only|no |got)"

OK_TYPES = (ConfigError, ValueError, TypeError)


class Case(NamedTuple):
    id: str
    fn: Callable[[], Any]
    exc: type[BaseException]
    rx: str
    xfail: str | None = None


CASES: list[Case] = []


def case(id_: str, fn: Callable[[], Any], rx: str, exc: type[BaseException] = ConfigError,
         xfail: str | None = None) -> None:
    CASES.append(Case(id_, fn, exc, rx, xfail))


def battery(prefix: str, call: Callable[[Any], Any], name: str, kinds: tuple[str, ...],
            exc: type[BaseException] = ConfigError, xfail: dict[str, str] | None = None
            ) -> None:
    """One case per kind of bad value for one numeric parameter."""
    for k in kinds:
        case(f"{prefix}-{k}", lambda v=BAD[k]: call(v), rf"{name}.*{REASON}", exc,
             (xfail or {}).get(k))


def _jc():
    import jaxcomp as jc

    return jc


def _prune():
    from jaxcomp import prune

    return prune


def _quant():
    from jaxcomp import quant

    return quant


def _distill():
    from jaxcomp import distill

    return distill


def _dec():
    from jaxcomp import decompose

    return decompose


def _sched():
    from jaxcomp.core import schedules

    return schedules


def _init(t, params=P):
    return t.init(params)


# ================================================================== jaxcomp.prune
battery("prune.magnitude.sparsity", lambda v: _init(_prune().magnitude(v)), "sparsity",
        FLOAT01 + ("one",))
battery("prune.pruner.sparsity", lambda v: _prune().pruner("random", v), "sparsity", FLOAT01)
battery("prune.rigl.sparsity", lambda v: _prune().rigl(v), "sparsity", FLOAT01)
battery("prune.set.sparsity", lambda v: _prune().set_(v), "sparsity", FLOAT01)
battery("prune.rigl.drop_fraction", lambda v: _prune().rigl(0.5, drop_fraction=v),
        "drop_fraction", FLOAT01)
battery("prune.rigl.every", lambda v: _prune().rigl(0.5, every=v), "(frequency|every)",
        ("negint", "zero", "nan", "str", "none"))
battery("prune.pruner.ema_decay", lambda v: _prune().taylor(0.5, ema_decay=v), "ema_decay",
        ("neg", "big", "nan", "inf", "str", "none"))
battery("prune.pruner.erk_power", lambda v: _prune().pruner(allocation="erk", erk_power=v),
        "erk_power", ("neg", "nan", "inf", "str", "none"))
battery("prune.pruner.n", lambda v: _init(_prune().pruner(structure="n:m", n=v, m=4), P8),
        r"(N:M|\bn\b)", ("negint", "zero", "frac", "str", "none", "big"))
battery("prune.pruner.m", lambda v: _init(_prune().pruner(structure="n:m", n=2, m=v), P8),
        r"(N:M|\bm\b)", ("negint", "zero", "frac", "str", "none"))
battery("prune.pruner.axis", lambda v: _init(_prune().pruner(structure="n:m", axis=v), P8),
        "axis", ("big", "frac", "str", "none"))
for name, value in [("score", "bogus"), ("score", None), ("allocation", "everywhere"),
                    ("allocation", 3), ("structure", "diagonal"), ("structure", None)]:
    key = {"score": "method"}.get(name, name)
    case(f"prune.pruner.{name}-{value}", lambda n=name, v=value: _prune().pruner(**{n: v}),
         rf"prune\.{key}.*allowed")
for i, block in enumerate([(0, 4), (3, 3), "4x4", None, (-1, 2), (2, 2, 2, 2)]):
    case(f"prune.pruner.block-{i}",
         lambda b=block: _init(_prune().pruner(structure="block", block=b), P8), r"block")
case("prune.pruner.block_reduce", lambda: _init(_prune().pruner(structure="block",
                                                               block=(2, 2),
                                                               block_reduce="median"), P8),
     r"reduce.*allowed")
case("prune.pruner.normalize", lambda: _init(_prune().pruner(allocation="global",
                                                            normalize="l3")), r"normalize.*l3")
case("prune.pruner.monotone-str", lambda: _prune().magnitude(0.5, monotone="no"),
     r"monotone.*(bool|True)")
for i, gate in enumerate([(10, 5, 1), (0, 10, 0), ("a", 10, 1), (0, 10), 5]):
    case(f"prune.pruner.gate-{i}", lambda g=gate: _prune().magnitude(0.5, gate=g),
         r"(gate|begin|end|every|frequency)")
for i, where in enumerate([42, "NoSuch/.*", ["!.*"], "(", [("a",)],
                           {"Dense_0": {"kernel": True}}, lambda p, x: False]):
    case(f"prune.where-{i}", lambda w=where: _init(_prune().magnitude(0.5, where=w)), r"where")
case("prune.where-int-leaf", lambda: _init(_prune().magnitude(0.5, where=".*"),
                                           {"w": jnp.ones((2, 2)), "i": jnp.ones(2, int)}),
     r"'i'.*float")
for name, params in [("empty-dict", {}), ("none", None), ("empty-list", [])]:
    case(f"prune.init.params-{name}", lambda p=params: _init(_prune().magnitude(0.5), p),
         r"params is empty")
    case(f"quant.weight_quant.params-{name}",
         lambda p=params: _init(_quant().weight_quant(8), p), r"params is empty")
    case(f"core.chain.params-{name}",
         lambda p=params: _init(_jc().chain(_prune().magnitude(0.5)), p), r"params is empty")
case("prune.init.nan-weight", lambda: _init(_prune().magnitude(0.5), {"w": NAN_W}),
     r"'w'.*NaN")
case("prune.init.inf-weight", lambda: _init(_prune().snip(0.5), {"w": INF_W}), r"'w'.*NaN/inf")
case("prune.rigl.init.nan-weight", lambda: _init(_prune().rigl(0.5), {"w": NAN_W}), r"'w'.*NaN")
case("prune.snip.update-no-grads",
     lambda: _prune().snip(0.5).update(P, _init(_prune().snip(0.5)), step=0), r"grads")
case("prune.random.update-no-key",
     lambda: _prune().random(0.5).update(P, _init(_prune().random(0.5)), step=0), r"key")
case("prune.rigl.update-no-key",
     lambda: _prune().rigl(0.5).update(P, _init(_prune().rigl(0.5)), step=0), r"key")


def _wq_state():
    return _init(_quant().weight_quant(8))


for what in ("apply", "update"):
    def _call(params, state, what=what):
        t = _prune().magnitude(0.5)
        if what == "apply":
            return t.apply(params, state)
        return t.update(params, state, step=0)

    for sname, mk in [("wq-state", _wq_state), ("tuple", lambda: ()), ("none", lambda: None),
                      ("empty", lambda: {})]:
        case(f"prune.{what}.state-{sname}", lambda c=_call, m=mk: c(P, m()),
             rf"prune\.{what}.*pruner's")
    case(f"prune.{what}.missing-leaf",
         lambda c=_call: c(P_MISSING, _init(_prune().magnitude(0.5))), r"lack.*Dense_1/kernel")
    case(f"prune.{what}.transposed",
         lambda c=_call: c(P_T, _init(_prune().magnitude(0.5))),
         r"Dense_0/kernel.*\(3, 4\).*\(4, 3\)")
case("prune.rigl.update.wq-state",
     lambda: _prune().rigl(0.5).update(P, _wq_state(), step=0, key=KEY, grads=P), r"pruner's")
case("prune.rigl.apply.transposed",
     lambda: _prune().rigl(0.5).apply(P_T, _init(_prune().rigl(0.5))), r"Dense_0/kernel")
for sname, step in [("str", "3"), ("none", None), ("frac", 2.5)]:
    case(f"prune.update.step-{sname}", lambda s=step: _prune().magnitude(0.5).update(
        P, _init(_prune().magnitude(0.5)), step=s), r"step.*(expected|integer)")
case("prune.prune_once.not-a-transform", lambda: _prune().prune_once(optax.sgd(0.1), P),
     r"(Transform|pruner)")

# masked_optimizer


def _mo(tx, pr, **kw):
    return _prune().masked_optimizer(tx, pr, **kw)


for name, mk in [("none", lambda: None), ("str", lambda: "adam"),
                 ("transform", lambda: _prune().magnitude(0.5))]:
    case(f"prune.masked_optimizer.tx-{name}", lambda m=mk: _mo(m(), _prune().magnitude(0.5)),
         r"masked_optimizer: tx")
for name, mk in [("weight_quant", lambda: _quant().weight_quant(8)),
                 ("optax", lambda: optax.sgd(0.1)), ("none", lambda: None),
                 ("decompose", lambda: _dec().decompose_reconstruct("svd", 1))]:
    case(f"prune.masked_optimizer.pruner-{name}",
         lambda m=mk: _mo(optax.adam(1e-3), m()).init(P), r"masked_optimizer.*prun")
for name, seed in [("str", "0"), ("frac", 1.5), ("none", None)]:
    case(f"prune.masked_optimizer.seed-{name}",
         lambda s=seed: _mo(optax.sgd(0.1), _prune().magnitude(0.5), seed=s), r"seed")
case("prune.masked_optimizer.update-no-params",
     lambda: (lambda tx: tx.update(P, tx.init(P)))(_mo(optax.sgd(0.1),
                                                        _prune().magnitude(0.5))), r"params")
case("prune.masked_optimizer.update-other-state",
     lambda: _mo(optax.sgd(0.1), _prune().magnitude(0.5)).update(
         P, optax.sgd(0.1).init(P), P), r"masked_optimizer.*MaskedState")
case("prune.get_masks.no-state", lambda: _prune().get_masks(optax.sgd(0.1).init(P)),
     r"get_masks.*masked_optimizer")

# mask primitives
battery("prune.topk_mask.sparsity", lambda v: _prune().topk_mask(W, v), "sparsity",
        FLOAT01 + ("one",))
battery("prune.global_masks.sparsity", lambda v: _prune().global_masks({"a": W}, v),
        "sparsity", ("neg", "big", "nan", "str", "none"))
case("prune.global_masks.normalize", lambda: _prune().global_masks({"a": W}, 0.5,
                                                                   normalize="l3"), "normalize")
case("prune.global_masks.empty", lambda: _prune().global_masks({}, 0.5), "no leaves")
battery("prune.layerwise_masks.sparsity", lambda v: _prune().layerwise_masks({"a": W}, {"a": v}),
        r"sparsity\[a\]", ("neg", "big", "nan", "str"))
battery("prune.erk_sparsities.sparsity", lambda v: _prune().erk_sparsities({"a": (4, 3)}, v),
        "sparsity", ("neg", "big", "nan", "str", "none"))
battery("prune.erk_sparsities.power",
        lambda v: _prune().erk_sparsities({"a": (4, 3)}, 0.5, power=v), "power",
        ("neg", "nan", "inf", "str", "none"))
battery("prune.nm_mask.n", lambda v: _prune().nm_mask(P8["Dense_0"]["kernel"], v, 4), "N:M",
        ("negint", "zero", "frac", "str", "none", "big"))
battery("prune.nm_mask.m", lambda v: _prune().nm_mask(P8["Dense_0"]["kernel"], 2, v), "N:M",
        ("negint", "zero", "frac", "str", "none"))
case("prune.nm_mask.m-not-divisor", lambda: _prune().nm_mask(W, 2, 4), r"M=4.*divide")
case("prune.nm_mask.axis", lambda: _prune().nm_mask(W, 1, 2, axis=7), r"axis 7")
battery("prune.block_mask.sparsity", lambda v: _prune().block_mask(W, v, (2, 1)), "sparsity",
        ("neg", "big", "nan", "str"))
case("prune.block_mask.block", lambda: _prune().block_mask(W, 0.5, (3, 3)), r"block")
case("prune.block_mask.reduce", lambda: _prune().block_mask(W, 0.5, (2, 1), reduce="median"),
     r"reduce.*allowed")
for name, k in [("str", "3"), ("none", None), ("frac", 2.5), ("neg", -1)]:
    case(f"prune.keep_largest.k-{name}", lambda v=k: _prune().keep_largest([W], v),
         r"\bk\b.*(allowed|expected)")
case("prune.sparsity_of.empty", lambda: _prune().sparsity_of({}), r"masks.*empty")
case("prune.check_masks.unknown-path",
     lambda: _prune().check_masks({"a": W}, {"b": jnp.ones((4, 3), bool)}), r"'b'")
case("prune.apply_masks.shape",
     lambda: _prune().apply_masks(P, {"Dense_0/kernel": jnp.ones((3, 4), bool)}),
     r"Dense_0/kernel.*\(3, 4\)")

# channels
battery("prune.unit_mask.sparsity", lambda v: _prune().unit_mask(W, v), "sparsity",
        ("neg", "big", "nan", "str", "none"))
case("prune.unit_mask.axis", lambda: _prune().unit_mask(W, 0.5, axis=4), r"axis")
case("prune.unit_mask.norm", lambda: _prune().unit_mask(W, 0.5, norm="l7"), r"norm.*allowed")


def _graph():
    from jaxcomp.models import get_model
    from jaxcomp.prune.groups import dependency_groups

    model = get_model("mlp", input_shape=(4,), num_classes=2, features=(6,))
    p, s = model.init(jax.random.key(0), jnp.ones((1, 4)))
    return dependency_groups(model, p, s, jnp.ones((1, 4)))


battery("prune.channel_pruner.sparsity", lambda v: _prune().channel_pruner(_graph(), v),
        "sparsity", ("neg", "big", "nan", "str", "none"))
case("prune.channel_pruner.norm", lambda: _prune().channel_pruner(_graph(), 0.5, norm="l7"),
     r"norm.*allowed")

# storage
battery("prune.encode_relative.index_bits",
        lambda v: _prune().encode_relative(np.asarray(W), index_bits=v), "index_bits",
        ("negint", "zero", "frac", "str", "none", "big"))
case("prune.encode_bitmask.text", lambda: _prune().encode_bitmask("abc"), r"(w|array)")
case("prune.decode.empty", lambda: _prune().decode({}), r"decode.*(format|keys)")
case("prune.decode.other-dict", lambda: _prune().decode({"values": np.ones(3)}),
     r"decode.*(format|keys)")
case("prune.nbytes.not-encoded", lambda: _prune().nbytes({"x": 3}), r"(nbytes|array)")
case("prune.encode_tree.fmt", lambda: _prune().encode_tree(P, "csr"), r"format.*allowed")

# ================================================================== jaxcomp.core.schedules
S_ARGS = dict(init=0.0, final=0.9, begin=0, end=10)
for fn_name in ("polynomial", "cosine", "linear"):
    for arg, kinds in [("init", ("nan", "inf", "str", "none", "list")),
                       ("final", ("nan", "inf", "str", "none")),
                       ("begin", ("nan", "str", "none", "frac")),
                       ("end", ("nan", "str", "none", "frac"))]:
        battery(f"core.schedules.{fn_name}.{arg}",
                lambda v, f=fn_name, a=arg: getattr(_sched(), f)(**{**S_ARGS, a: v}), arg,
                kinds)
    case(f"core.schedules.{fn_name}.end-before-begin",
         lambda f=fn_name: getattr(_sched(), f)(0.0, 0.9, 10, 5), r"end.*begin")
battery("core.schedules.polynomial.power",
        lambda v: _sched().polynomial(**S_ARGS, power=v), "power",
        ("neg", "zero", "nan", "inf", "str", "none"))
battery("core.schedules.polynomial.frequency",
        lambda v: _sched().polynomial(**S_ARGS, frequency=v), "frequency",
        ("negint", "zero", "frac", "nan", "str", "none"))
battery("core.schedules.one_shot.value", lambda v: _sched().one_shot(v), "value",
        ("nan", "inf", "str", "none", "list"))
battery("core.schedules.one_shot.at", lambda v: _sched().one_shot(0.5, at=v), r"\bat\b",
        ("nan", "frac", "str", "none"))
battery("core.schedules.constant.value", lambda v: _sched().constant(v), "value",
        ("nan", "inf", "str", "none"))
battery("core.schedules.gate.every", lambda v: _sched().gate(0, 10, v), "every",
        ("negint", "zero", "frac", "nan", "str", "none"))
case("core.schedules.gate.end-before-begin", lambda: _sched().gate(10, 5), r"end.*begin")
case("core.schedules.as_schedule.text", lambda: _sched().as_schedule("0.5"), r"expected")

# ================================================================== jaxcomp.core: chain, select
for name, bad in [("none", None), ("str", "magnitude"), ("optax", optax.sgd(0.1)),
                  ("function", lambda: None)]:
    case(f"core.chain.arg-{name}", lambda b=bad: _jc().chain(_jc().identity(), b),
         r"chain: argument 1.*Transform")
case("core.named_chain.duplicate",
     lambda: _jc().named_chain(("a", _jc().identity()), ("a", _jc().identity())), r"duplicate")
case("core.named_chain.not-pair", lambda: _jc().named_chain(_jc().identity()),
     r"named_chain: argument 0")


def _chain2():
    return _jc().chain(_prune().magnitude(0.5), _quant().weight_quant(8))


for name, mk in [("dict", lambda: {"0": None}), ("short", lambda: (_init(_prune().magnitude(
        0.5)),)), ("none", lambda: None), ("pruner-state", lambda: _init(_prune().magnitude(0.5)))]:
    case(f"core.chain.apply.state-{name}", lambda m=mk: _chain2().apply(P, m()),
         r"chain.apply.*tuple of 2")
    case(f"core.chain.update.state-{name}", lambda m=mk: _chain2().update(P, m(), step=0),
         r"chain.update.*tuple of 2")
case("core.chain.apply.swapped-states",
     lambda: _chain2().apply(P, tuple(reversed(_init(_chain2())))), r"(pruner's|weight_quant's)")
case("core.named_chain.apply.keys",
     lambda: _jc().named_chain(("a", _jc().identity())).apply(P, {"b": ()}),
     r"dict with keys \['a'\]")


def _select(where, tree=P):
    from jaxcomp.core.select import select

    return select(tree, where)


for i, where in enumerate([42, 3.5, "NoSuch", ["!.*"], "(", [("a",)], [("a", 1, 2)],
                           {"Dense_0": True}, lambda p, x: False, [42]]):
    case(f"core.select.where-{i}", lambda w=where: _select(w), r"where")
case("core.resolve_rules.what", lambda: __import__(
    "jaxcomp.core.select", fromlist=["x"]).resolve_rules(P, [8], what="rank"), r"^rank:")
case("core.paths.replace-unknown",
     lambda: __import__("jaxcomp.core.paths", fromlist=["x"]).replace(P, {"nope": 1}),
     r"nope.*(not in|available)")

# ================================================================== jaxcomp.quant
battery("quant.weight_quant.bits", lambda v: _init(_quant().weight_quant(v)), "bits",
        ("negint", "zero", "frac", "nan", "inf", "str", "none", "list", "obj", "big"))
for b in (1, 9, 32):
    case(f"quant.weight_quant.bits-{b}", lambda b=b: _init(_quant().weight_quant(b)),
         rf"bits.*{b}.*allowed")
case("quant.weight_quant.bits-rules-none-match",
     lambda: _init(_quant().weight_quant([("NoSuch", 8)])), r"bits.*NoSuch")
case("quant.weight_quant.bits-rules-bad-value",
     lambda: _init(_quant().weight_quant([(".*", 9)])), r"bits\[Dense_0/kernel\].*9")
for name, kw, rx in [
        ("axis", {"axis": 5}, r"axis.*5"), ("axis-str", {"axis": "x"}, r"axis"),
        ("group_size", {"group_size": 5}, r"group_size.*5"),
        ("group_size-0", {"group_size": 0}, r"group_size"),
        ("group_size-str", {"group_size": "2"}, r"group_size"),
        ("group_axis", {"group_size": 2, "group_axis": 9}, r"group_axis"),
        ("observer", {"observer": "max"}, r"observer.*allowed"),
        ("rounding", {"rounding": "up"}, r"rounding.*allowed"),
        ("stochastic-no-key", {"rounding": "stochastic"}, r"key"),
        ("per_channel-str", {"per_channel": "no"}, r"per_channel.*bool"),
        ("symmetric-str", {"symmetric": "no"}, r"symmetric.*bool"),
        ("mse-group", {"observer": "mse", "group_size": 2}, r"group_size")]:
    case(f"quant.weight_quant.{name}", lambda k=kw: _init(_quant().weight_quant(8, **k)), rx)
case("quant.weight_quant.int-leaf",
     lambda: _init(_quant().weight_quant(8, where=".*/kernel"),
                   {"a": {"kernel": jnp.ones((2, 2), jnp.int32)}}), r"a/kernel.*dtype")
case("quant.weight_quant.nan", lambda: _init(_quant().weight_quant(8), {"w": NAN_W}),
     r"w.*NaN")
for what in ("apply", "update"):
    def _qcall(params, state, what=what):
        t = _quant().weight_quant(8)
        t.init(P)
        if what == "apply":
            return t.apply(params, state)
        return t.update(params, state, step=0)

    for sname, mk in [("pruner-state", lambda: _init(_prune().magnitude(0.5))),
                      ("none", lambda: None), ("tuple", lambda: ((),))]:
        case(f"quant.weight_quant.{what}.state-{sname}", lambda c=_qcall, m=mk: c(P, m()),
             rf"weight_quant\.{what}.*weight_quant's")
    case(f"quant.weight_quant.{what}.missing-leaf",
         lambda c=_qcall: c(P_MISSING, _wq_state()), r"lack.*Dense_1/kernel")
    case(f"quant.weight_quant.{what}.transposed", lambda c=_qcall: c(P_T, _wq_state()),
         r"Dense_0/kernel.*\(3, 4\).*\(4, 3\)")

battery("quant.fake_quant.bits", lambda v: _quant().fake_quant(W, v), "bits",
        ("negint", "zero", "frac", "nan", "str", "none", "list"))
battery("quant.quantize.bits", lambda v: _quant().quantize(W, v), "bits",
        ("negint", "zero", "frac", "nan", "str", "none"))
battery("quant.qparams.bits", lambda v: _quant().qparams(-1.0, 1.0, v), "bits",
        ("negint", "frac", "nan", "str"))
battery("quant.qrange.bits", lambda v: _quant().qrange(v), "bits",
        ("negint", "frac", "nan", "str", "none"))
battery("quant.quantize_with.bits",
        lambda v: _quant().quantize_with(W, jnp.ones(()), jnp.zeros(()), v), "bits",
        ("negint", "frac", "str"))
for name, kw, rx in [("axis", {"axis": 3}, r"axis.*3"), ("axis-rep", {"axis": (0, 0)},
                                                          r"axis.*repeated"),
                     ("group", {"group_size": 5, "group_axis": 0}, r"group_size.*5"),
                     ("rounding", {"rounding": "floor"}, r"rounding.*allowed"),
                     ("stochastic-no-key", {"rounding": "stochastic"}, r"key")]:
    case(f"quant.fake_quant.{name}", lambda k=kw: _quant().fake_quant(W, 8, **k), rx)
case("quant.fake_quant.nan", lambda: _quant().fake_quant(NAN_W, 8), r"NaN")
case("quant.fake_quant.int-input", lambda: _quant().fake_quant(jnp.ones(3, jnp.int32), 8),
     r"(dtype|float)")
case("quant.quantize.text-input", lambda: _quant().quantize("abc", 8), r"(x|array)")
case("quant.dequantize.shape", lambda: _quant().dequantize(jnp.ones((4, 3), jnp.int8),
                                                           jnp.ones((5, 1))), r"scale.*shape")

# observers
case("quant.observe.name", lambda: _quant().observe(W, "maxmin"), r"observer.*allowed")
battery("quant.observe.percentile", lambda v: _quant().observe(W, "percentile", percentile=v),
        "percentile", ("neg", "big", "nan", "str", "none"))
battery("quant.observe.bits", lambda v: _quant().observe(W, "mse", bits=v), "bits",
        ("negint", "frac", "str"))
case("quant.observe.axis", lambda: _quant().observe(W, "minmax", axis=4), r"axis")


def _obs():
    from jaxcomp.quant import observers

    return observers


battery("quant.mse_range.grid", lambda v: _obs().mse_range(W, 8, grid=v), "grid",
        ("negint", "zero", "frac", "str", "none"))
battery("quant.mse_range.min_ratio", lambda v: _obs().mse_range(W, 8, min_ratio=v),
        "min_ratio", ("neg", "zero", "big", "nan", "str", "none"))
battery("quant.ema.momentum", lambda v: _obs().ema((W, W), (W, W), 1, momentum=v), "momentum",
        ("neg", "big", "nan", "str", "none"))
case("quant.combine.observer", lambda: _obs().combine((W, W), (W, W), 1, "maxmin"),
     r"observer.*allowed")
battery("quant.require_batches", lambda v: _obs().require_batches(v), "calib_batches",
        ("negint", "zero", "str", "none", "frac"))

# kmeans
battery("quant.kmeans1d.k", lambda v: _quant().kmeans1d(W.ravel(), k=v), r"\bk\b",
        ("negint", "zero", "frac", "str", "none", "big"))
battery("quant.kmeans1d.iters", lambda v: _quant().kmeans1d(W.ravel(), k=2, iters=v), "iters",
        ("negint", "frac", "str", "none"))
case("quant.kmeans1d.init", lambda: _quant().kmeans1d(W.ravel(), k=2, init="kmeans++"),
     r"init.*allowed")
case("quant.kmeans1d.random-no-key", lambda: _quant().kmeans1d(W.ravel(), k=2, init="random"),
     r"key")
case("quant.kmeans1d.mask-shape", lambda: _quant().kmeans1d(W.ravel(), jnp.ones(5, bool), k=2),
     r"mask.*shape")
case("quant.kmeans1d.nan", lambda: _quant().kmeans1d(NAN_W.ravel(), k=2), r"NaN")
case("quant.kmeans1d.centroids-shape",
     lambda: _quant().kmeans1d(W.ravel(), k=3, centroids=jnp.zeros(2)), r"centroids")


# ptq (arguments only)
def _ptq(**kw):
    from jaxcomp.models import get_model

    model = get_model("mlp", input_shape=(4,), num_classes=2, features=(6,))
    p, s = model.init(jax.random.key(0), jnp.ones((1, 4)))
    calib = kw.pop("calib", [jnp.ones((2, 4))])
    return _quant().ptq(model, p, s, calib, **kw)


case("quant.ptq.bits-1", lambda: _ptq(bits=1), r"bits.*1")
case("quant.ptq.bits-str", lambda: _ptq(bits="8"), r"bits.*'8'")
case("quant.ptq.observer", lambda: _ptq(act_bits=8, observer="maxmin"), r"observer.*allowed")
case("quant.ptq.weight_observer", lambda: _ptq(weight_observer="percentile"),
     r"observer.*allowed")
case("quant.ptq.no-calib", lambda: _ptq(act_bits=8, calib=[]), r"calib")
case("quant.ptq.act_bits", lambda: _ptq(act_bits=3.5), r"act_bits")

# ================================================================== jaxcomp.distill


def _kd(t=2.0, a=0.5, s=L, te=L, y=Y):
    return _distill().kd_loss(s, te, y, t, a)


battery("distill.kd_loss.temperature", lambda v: _kd(t=v), "temperature", POS_FLOAT + ("obj",))
battery("distill.kd_loss.alpha", lambda v: _kd(a=v), "alpha", FLOAT01)
for name, y, rx in [("labels-size", jnp.zeros(3, int), r"labels.*\(3,\).*\(4, 3\)"),
                    ("labels-frac", jnp.array([0.5, 1.0, 0.0, 2.0]), r"labels.*0\.5"),
                    ("labels-neg", jnp.array([0, -1, 1, 1]), r"labels.*-1"),
                    ("labels-too-big", jnp.array([0, 3, 1, 1]), r"labels.*3.*\[0, 2\]"),
                    ("labels-2d", jnp.zeros((4, 3)), r"labels.*\(4, 3\)"),
                    ("labels-nan", jnp.array([0.0, jnp.nan, 1.0, 1.0]), r"labels.*nan")]:
    case(f"distill.kd_loss.{name}", lambda y=y: _kd(y=y), rx)
case("distill.kd_loss.labels-frac-jit",
     lambda: jax.jit(_distill().kd_loss)(L, L, jnp.array([0.5, 1.0, 0.0, 2.0]), 2.0, 0.5),
     r"labels.*dtype float32")
case("distill.kd_loss.teacher-classes", lambda: _kd(te=jnp.ones((4, 5))), r"\(4, 3\).*\(4, 5\)")
case("distill.kd_loss.teacher-batch", lambda: _kd(te=jnp.ones((2, 3))), r"\(4, 3\).*\(2, 3\)")
case("distill.kd_loss.logits-1d", lambda: _kd(s=jnp.ones(3), te=jnp.ones(3), y=Y), r"labels")
battery("distill.soft_target_kl.temperature",
        lambda v: _distill().soft_target_kl(L, L, v), "temperature", POS_FLOAT)
case("distill.hard_cross_entropy.labels", lambda: _distill().hard_cross_entropy(L, Y[:2]),
     r"labels.*\(2,\)")
case("distill.logit_mse.shape", lambda: _distill().logit_mse(L, L[:, :2]), r"\(4, 3\).*\(4, 2\)")
for arg, kinds in [("alpha", ("neg", "nan", "str", "none")),
                   ("beta", ("neg", "nan", "str", "none")),
                   ("temperature", POS_FLOAT)]:
    battery(f"distill.dkd_loss.{arg}",
            lambda v, a=arg: _distill().dkd_loss(L, L, Y, **{a: v}), arg, kinds)
for arg, kinds in [("beta", ("neg", "nan", "str", "none")),
                   ("gamma", ("neg", "nan", "str", "none")),
                   ("temperature", POS_FLOAT)]:
    battery(f"distill.dist_loss.{arg}",
            lambda v, a=arg: _distill().dist_loss(L, L, **{a: v}), arg, kinds)
case("distill.dkd_loss.labels", lambda: _distill().dkd_loss(L, L, Y[:3]), r"labels")
case("distill.dist_loss.shape", lambda: _distill().dist_loss(L, L[:3]), r"\(4, 3\).*\(3, 3\)")
F = jnp.ones((4, 5, 5, 8))
case("distill.hint_loss.shape", lambda: _distill().hint_loss(F, F[..., :4]),
     r"\(4, 5, 5, 8\).*\(4, 5, 5, 4\)")
case("distill.init_projection.rank",
     lambda: _distill().init_projection(KEY, (4, 8), (4, 5, 5, 8)), r"(shape|rank)")
case("distill.project.channels",
     lambda: _distill().project(_distill().init_projection(KEY, (4, 6), (4, 8)), F),
     r"(channels|shape).*8")
battery("distill.rkd_loss.distance_weight",
        lambda v: _distill().rkd_loss(L, L, distance_weight=v), "distance_weight",
        ("neg", "nan", "str", "none"))
battery("distill.rkd_loss.angle_weight", lambda v: _distill().rkd_loss(L, L, angle_weight=v),
        "angle_weight", ("neg", "nan", "str", "none"))
case("distill.rkd_loss.batch", lambda: _distill().rkd_loss(L, L[:3]), r"batch|\(4, 3\)")
case("distill.rkd_distance.batch", lambda: _distill().rkd_distance(L, L[:2]), r"batch|\(4, 3\)")
case("distill.pkt_loss.batch", lambda: _distill().pkt_loss(L, L[:2]), r"batch|\(4, 3\)")
case("distill.sp_loss.batch", lambda: _distill().sp_loss(F, F[:2]), r"batch|\(4, 5, 5, 8\)")
battery("distill.attention_transfer.p", lambda v: _distill().attention_transfer(F, F, p=v),
        r"\bp\b", ("neg", "zero", "nan", "str", "none"))
case("distill.attention_transfer.shape", lambda: _distill().attention_transfer(F, F[:, :3]),
     r"\(4, 5, 5, 8\).*\(4, 3, 5, 8\)|spatial")
battery("distill.jitter.max_shift", lambda v: _distill().jitter(F, KEY, max_shift=v),
        "max_shift", ("negint", "frac", "str", "none"))
case("distill.distill_term.method",
     lambda: _distill().distill_term("hinton", L, L, Y, _distill().loss_state()),
     r"method.*allowed")
case("distill.make_loss_fn.method", lambda: _distill().make_loss_fn("hinton"),
     r"method.*allowed")
case("distill.loss_state.text", lambda: _distill().loss_state(temperature="4"),
     r"temperature.*text")
case("distill.loss_state.unknown", lambda: _distill().loss_state(temprature=4.0),
     r"temprature")

# ================================================================== jaxcomp.decompose
battery("decompose.truncated_svd.rank", lambda v: _dec().truncated_svd(W, v), "rank",
        POS_INT + ("big",))
case("decompose.truncated_svd.rank-bool", lambda: _dec().truncated_svd(W, True), "rank")
case("decompose.truncated_svd.3d", lambda: _dec().truncated_svd(jnp.ones((2, 3, 4)), 1),
     r"kernel.*(2-D|shape)")
case("decompose.truncated_svd.nan", lambda: _dec().truncated_svd(NAN_W, 1), r"NaN")
battery("decompose.randomized_svd.rank", lambda v: _dec().randomized_svd(W, v, key=KEY), "rank",
        ("negint", "zero", "frac", "str", "none", "big"))
battery("decompose.randomized_svd.oversample",
        lambda v: _dec().randomized_svd(W, 1, key=KEY, oversample=v), "oversample",
        ("negint", "frac", "str", "none"))
battery("decompose.randomized_svd.power_iters",
        lambda v: _dec().randomized_svd(W, 1, key=KEY, power_iters=v), "power_iters",
        ("negint", "frac", "str", "none"))
case("decompose.randomized_svd.no-key", lambda: _dec().randomized_svd(W, 1, key=None), r"key")
for i, r in enumerate([(0, 4), (9, 9), "4", 2.5, (4, 4, 4), None, (-1, 2), (4.5, 4)]):
    case(f"decompose.tucker2.ranks-{i}", lambda r=r: _dec().tucker2(K4, r), r"rank")
battery("decompose.tucker2.n_iter", lambda v: _dec().tucker2(K4, (4, 4), n_iter=v), "n_iter",
        ("negint", "frac", "str", "none"))
case("decompose.tucker2.2d", lambda: _dec().tucker2(W, (2, 2)), r"4-D|shape")
case("decompose.tucker2.nan", lambda: _dec().tucker2(K4.at[0, 0, 0, 0].set(jnp.nan), (4, 4)),
     r"NaN")
battery("decompose.cp_als.rank", lambda v: _dec().cp_als(K4, v, key=KEY), "rank", POS_INT)
battery("decompose.cp_als.n_iter", lambda v: _dec().cp_als(K4, 2, key=KEY, n_iter=v), "n_iter",
        ("negint", "frac", "str", "none"))
case("decompose.cp_als.no-key", lambda: _dec().cp_als(K4, 2), r"key")
case("decompose.cp_als.nan", lambda: _dec().cp_als(K4.at[0, 0, 0, 0].set(jnp.nan), 2, key=KEY),
     r"NaN")
case("decompose.tt_matrix.inf",
     lambda: _dec().tt_matrix(jnp.ones((4, 6)).at[0, 0].set(jnp.inf), (2, 2), (2, 3), 2),
     r"NaN/inf")
case("decompose.cp_als.1d", lambda: _dec().cp_als(jnp.ones(4), 1, key=KEY), r"(dims|shape)")
case("decompose.tt_matrix.modes", lambda: _dec().tt_matrix(jnp.ones((8, 6)), (2, 2), (2, 3), 2),
     r"(modes|shape)")
case("decompose.tt_matrix.rank", lambda: _dec().tt_matrix(jnp.ones((4, 6)), (2, 2), (2, 3), 0),
     r"rank")
S_VALS = np.array([3.0, 2.0, 1.0])
battery("decompose.energy_rank.energy", lambda v: _dec().energy_rank(S_VALS, v), "energy",
        ("neg", "zero", "big", "nan", "str", "none"))
battery("decompose.ratio_rank.ratio", lambda v: _dec().ratio_rank((4, 3), v), "ratio",
        ("neg", "zero", "nan", "inf", "str", "none"))
battery("decompose.energy_tucker2_ranks.energy",
        lambda v: _dec().energy_tucker2_ranks(np.asarray(K4), v), "energy",
        ("neg", "zero", "big", "nan", "str"))
case("decompose.evbmf.sigma2", lambda: _dec().evbmf(np.asarray(W), sigma2=-1.0), r"sigma2")
case("decompose.evbmf.1d", lambda: _dec().evbmf(np.ones(4)), r"(2-D|shape)")
battery("decompose.allocate.budget", lambda v: _dec().allocate(
    {"a": _dec().svd_candidates(S_VALS, (4, 3))}, v), "budget",
    ("neg", "zero", "nan", "str", "none"))


def _dr(*a, **k):
    return _dec().decompose_reconstruct(*a, **k)


case("decompose.decompose_reconstruct.method", lambda: _dr("qr", 1), r"method.*allowed")
case("decompose.decompose_reconstruct.tucker2-rank-list",
     lambda: _init(_dr("tucker2", [8, 8]), {"c": K4}), r"^rank: got the list \[8, 8\]")
for name, r in [("0", 0), ("str", "2"), ("none", None), ("big", 7), ("frac", 1.5)]:
    case(f"decompose.decompose_reconstruct.rank-{name}", lambda r=r: _init(_dr("svd", r)),
         r"rank")
battery("decompose.decompose_reconstruct.n_iter", lambda v: _dr("tucker2", 2, n_iter=v),
        "n_iter", ("negint", "frac", "str", "none"))
battery("decompose.decompose_reconstruct.every", lambda v: _dr("svd", 1, every=v), "every",
        ("negint", "zero", "frac", "str", "none"))
battery("decompose.decompose_reconstruct.refine_iters",
        lambda v: _dr("cp", 1, refine_iters=v, key=KEY), "refine_iters",
        ("negint", "frac", "str"))
case("decompose.decompose_reconstruct.cp-no-key", lambda: _dr("cp", 1), r"key")
case("decompose.decompose_reconstruct.svd-on-4d", lambda: _init(_dr("svd", 1), {"c": K4}),
     r"c.*2-D")
case("decompose.decompose_reconstruct.where", lambda: _init(_dr("svd", 1, where="Nope")),
     r"where.*Nope")
for what in ("apply", "update"):
    def _dcall(params, state, what=what):
        t = _dr("svd", 1)
        return t.apply(params, state) if what == "apply" else t.update(params, state, step=0)

    case(f"decompose.{what}.pruner-state",
         lambda c=_dcall: c(P, _init(_prune().magnitude(0.5))), r"pruner.*decompose")
    case(f"decompose.{what}.none-state", lambda c=_dcall: c(P, None), r"decompose")
    case(f"decompose.{what}.missing-leaf",
         lambda c=_dcall: c(P_MISSING, _init(_dr("svd", 1))), r"lack.*Dense_1/kernel")
    case(f"decompose.{what}.transposed", lambda c=_dcall: c(P_T, _init(_dr("svd", 1))),
         r"Dense_0/kernel.*\(3, 4\)")
case("decompose.factorize_params.unknown-path",
     lambda: _dec().factorize_params(P, {"Nope": {"method": "svd", "rank": 1}}), r"Nope")
case("decompose.factorize_params.method",
     lambda: _dec().factorize_params(P, {"Dense_0": {"method": "qr", "rank": 1}}),
     r"method.*qr")
case("decompose.factorize_params.rank",
     lambda: _dec().factorize_params(P, {"Dense_0": {"method": "svd", "rank": 0}}), r"rank")
case("decompose.decompose_kernel.method", lambda: _dec().decompose_kernel(W, "qr", 1),
     r"method.*qr")
case("decompose.normalize_spec.text", lambda: _dec().normalize_spec("svd"), r"spec")


# ================================================================== jaxcomp.train.fit (test only)
def _fit(**kw):
    from jaxcomp.data import load_dataset
    from jaxcomp.models import get_model
    from jaxcomp.train import fit

    ds = load_dataset("synthetic")
    model = get_model("mlp", input_shape=ds.input_shape, num_classes=ds.num_classes)
    args = {"epochs": 1, "batch_size": 8, "progress": False, **kw}
    tx = args.pop("tx", optax.sgd(0.1))
    return fit(model, ds, tx, **args)


battery("train.fit.epochs", lambda v: _fit(epochs=v), "epochs",
        ("negint", "frac", "str", "none"))
battery("train.fit.batch_size", lambda v: _fit(batch_size=v), "batch_size",
        ("negint", "zero", "frac", "str", "none"))
battery("train.fit.eval_every", lambda v: _fit(eval_every=v), "eval_every",
        ("negint", "zero", "str"))
case("train.fit.tx-none", lambda: _fit(tx=None), r"tx")
case("train.fit.transform-str", lambda: _fit(transform="magnitude"), r"transform")
case("train.fit.seed-str", lambda: _fit(seed="0"), r"seed")


# ------------------------------------------------------------------ the test
def _marks(c: Case):
    return (pytest.mark.xfail(strict=True, reason=c.xfail),) if c.xfail else ()


def check_case(c: Case) -> str | None:
    """None if the case raised the expected, clear error; else what went wrong."""
    try:
        c.fn()
    except BaseException as e:  # noqa: BLE001 - classifying is the point
        if isinstance(e, KeyboardInterrupt):
            raise
        mod = type(e).__module__
        msg = str(e)
        if (isinstance(e, KeyError | AttributeError | IndexError)
                and not isinstance(e, ConfigError)) or \
                mod.startswith(("jax.", "jaxlib")) or mod == "jax":
            return f"unclear {type(e).__name__} ({mod}): {msg[:200]}"
        if not isinstance(e, c.exc) or not isinstance(e, OK_TYPES):
            return f"wrong type {type(e).__name__}: {msg[:200]}"
        if not re.search(c.rx, msg, re.S):
            return f"message {msg[:300]!r} does not match {c.rx!r}"
        return None
    return "silent: no error raised"


@pytest.mark.parametrize("c", [pytest.param(c, id=c.id, marks=_marks(c)) for c in CASES])
def test_bad_input_is_a_clear_error(c: Case) -> None:
    problem = check_case(c)
    assert problem is None, problem


def test_corpus_size_and_unique_ids() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) >= 250
    assert len(set(ids)) == len(ids), [i for i in ids if ids.count(i) > 1]
    families = {i.split(".")[0] for i in ids}
    assert {"prune", "quant", "distill", "decompose", "core", "train"} <= families


# ------------------------------------------------------------------ checked mode (traced values)
def _pruner_step():
    from jaxcomp.core import checked

    t = _prune().magnitude(0.5)
    state = t.init(P)
    step = checked(jax.jit(lambda p, s, i: t.update(p, s, step=i)))
    return t, state, step


def _scaled(state, factor):
    return dict(state, schedule=jax.tree.map(lambda v: v * factor, state["schedule"]))


@pytest.mark.parametrize("factor, value", [(3.0, "1.5"), (2.0, "1.0"), (-1.0, "-0.5")])
def test_checked_pruner_refuses_a_traced_sparsity_out_of_range(factor, value):
    from jaxcomp.core import CheckedValueError

    _, state, step = _pruner_step()
    with pytest.raises(CheckedValueError, match=rf"prune\.sparsity: got {value}; allowed "
                                                r"range \[0, 1\)"):
        step(P, _scaled(state, factor), 0)


def test_checked_pruner_gives_the_unchecked_masks_and_is_silent_without_checked():
    t, state, step = _pruner_step()
    got = step(P, _scaled(state, 1.6), 0)                  # sparsity 0.8: fine
    want = jax.jit(lambda p, s: t.update(p, s, step=0))(P, _scaled(state, 1.6))
    for p in want["masks"]:
        np.testing.assert_array_equal(got["masks"][p], want["masks"][p])
    assert int((~got["masks"]["Dense_0/kernel"]).sum()) == round(0.8 * 12)
    # outside checked(): the planted checks compile to nothing (1.5 is clipped silently)
    jax.jit(lambda p, s: t.update(p, s, step=0))(P, _scaled(state, 3.0))


def test_checked_pruner_under_vmap_names_the_bad_setting():
    from jaxcomp.core import CheckedValueError, checked

    t = _prune().magnitude(0.5)
    state = t.init(P)
    targets = jnp.array([0.25, 0.5, 1.25])
    batched = jax.vmap(lambda v: dict(state, schedule=jax.tree.map(
        lambda a: a * 0 + v, state["schedule"])))(targets)
    run = checked(jax.jit(jax.vmap(lambda s: t.update(P, s, step=0))))
    with pytest.raises(CheckedValueError, match=r"prune\.sparsity: got 1\.25"):
        run(batched)
    ok = run(jax.tree.map(lambda a: a[:2], batched))
    assert ok["masks"]["Dense_0/kernel"].shape == (2, 4, 3)


def test_checked_pruner_refuses_nan_weights_at_a_jitted_update():
    from jaxcomp.core import CheckedValueError

    t, state, step = _pruner_step()
    bad = jax.tree.map(lambda x: x, P)
    bad["Dense_0"]["kernel"] = W.at[0, 0].set(jnp.nan)
    with pytest.raises(CheckedValueError, match=r"Dense_0/kernel.*1 NaN/inf"):
        step(bad, state, 0)


@pytest.mark.parametrize("jit_outer", [False, True])
def test_checked_weight_quant_refuses_traced_bits(jit_outer):
    from jaxcomp.core import CheckedValueError, checked

    t = _quant().weight_quant(8)
    state = t.init(P)
    apply = checked(t.apply, jit=True) if jit_outer else checked(jax.jit(t.apply))
    out = apply(P, state)
    np.testing.assert_allclose(out["Dense_0"]["kernel"], t.apply(P, state)["Dense_0"]["kernel"])
    for b in (1.0, 9.0, 4.5):
        bad = {"bits": dict(state["bits"], **{"Dense_0/kernel": jnp.float32(b)})}
        with pytest.raises(CheckedValueError, match=rf"bits: got {b}; allowed: \(2, 3"):
            apply(P, bad)


def test_checked_fake_quant_bits_sweep_under_vmap():
    from jaxcomp.core import CheckedValueError, checked

    f = checked(jax.jit(jax.vmap(lambda b: _quant().fake_quant(W, b))))
    assert f(jnp.array([4.0, 8.0])).shape == (2, 4, 3)
    with pytest.raises(CheckedValueError, match=r"bits: got 12\.0"):
        f(jnp.array([4.0, 12.0]))


@pytest.mark.parametrize("t, rx", [(0.0, r"got 0\.0"), (-2.0, r"got -2\.0"),
                                   (float("nan"), r"got nan"), (float("inf"), r"got inf")])
def test_checked_kd_loss_refuses_traced_temperature(t, rx):
    from jaxcomp.core import CheckedValueError, checked

    loss = checked(jax.jit(_distill().kd_loss))
    want = float(_distill().kd_loss(L, L * 2, Y, 3.0, 0.5))
    assert float(loss(L, L * 2, Y, 3.0, 0.5)) == pytest.approx(want, rel=1e-6)
    with pytest.raises(CheckedValueError,
                       match=rf"distill\.temperature: {rx}; allowed range \(0, inf\)"):
        loss(L, L * 2, Y, jnp.float32(t), 0.5)
    with pytest.raises(CheckedValueError, match=r"distill\.alpha: got 1\.5"):
        loss(L, L * 2, Y, 3.0, jnp.float32(1.5))


def _effects(fn, *args) -> set:
    return set(jax.make_jaxpr(fn)(*args).effects)


def test_nothing_is_planted_outside_checked():
    """A planted check is an effect: it takes a jitted function off JAX's fast dispatch
    path, so an ordinary trace must carry none (and `checked` must still plant them)."""
    t = _prune().magnitude(0.5)
    state = t.init(P)
    wq = _quant().weight_quant(8)
    qstate = wq.init(P)
    cases = [(lambda p, s: t.update(p, s, step=0), (P, state)),
             (wq.apply, (P, qstate)),
             (_distill().kd_loss, (L, L * 2, Y, jnp.float32(3.0), jnp.float32(0.5)))]
    from jaxcomp.core.checked import _PLANTING

    for fn, args in cases:
        assert _effects(fn, *args) == set()
        with _PLANTING(True):
            assert _effects(fn, *args), fn


def test_checked_retraces_a_function_jitted_and_run_before():
    from jaxcomp.core import CheckedValueError, checked

    loss = jax.jit(_distill().kd_loss)
    bad = (L, L * 2, Y, jnp.float32(-1.0), jnp.float32(0.5))
    loss(*bad).block_until_ready()  # traced, compiled and cached without checks
    with pytest.raises(CheckedValueError, match=r"distill\.temperature: got -1\.0"):
        checked(loss)(*bad)
    loss(*bad)  # and the unchecked call stays unchecked
