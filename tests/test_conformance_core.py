"""The core transforms through the conformance suite, and the suite's own teeth."""

import jax
import jax.numpy as jnp
import pytest

import jaxcomp as jc
from jaxcomp.core.transform import Transform
from tests.conformance import check_transform, linen_params


def scale_by(h):
    """A toy transform whose factor is an array in its state (vmap-able)."""
    def init(params):
        return {"factor": jnp.asarray(h, jnp.float32), "count": jnp.zeros((), jnp.int32)}

    def apply(params, state):
        return jax.tree.map(lambda x: x * state["factor"], params)

    def update(params, state, *, step, grads=None, key=None):
        return {**state, "count": state["count"] + 1}

    return Transform(init, apply, update)


def test_identity_conforms():
    check_transform(jc.identity)


def test_chain_conforms():
    check_transform(lambda: jc.chain(scale_by(2.0), jc.identity(), scale_by(0.5)),
                    hparam_factory=lambda h: jc.chain(scale_by(h), scale_by(2.0)),
                    hparam_values=[0.5, 1.0, 3.0])


def test_named_chain_conforms():
    check_transform(lambda: jc.named_chain(("a", scale_by(2.0)), ("b", scale_by(3.0))),
                    hparam_factory=lambda h: jc.named_chain(("a", scale_by(h))),
                    hparam_values=[1.0, 2.0])


def test_stateless_conforms():
    check_transform(lambda: jc.stateless(lambda p: jax.tree.map(jnp.tanh, p)))


def test_chain_applies_in_order():
    t = jc.chain(jc.stateless(lambda p: {"w": p["w"] + 1}), scale_by(3.0))
    out = t.apply({"w": jnp.ones(2)}, t.init({"w": jnp.ones(2)}))
    assert jnp.allclose(out["w"], 6.0)


def test_suite_catches_retrace():
    """A transform whose update changes the state dtype must fail the suite."""
    def bad():
        return Transform(lambda p: {"n": jnp.zeros((), jnp.int32)}, lambda p, s: p,
                         lambda p, s, *, step, grads=None, key=None:
                         {"n": s["n"].astype(jnp.float32)})

    with pytest.raises(AssertionError):
        check_transform(bad, param_sets=("linen",))


def test_suite_catches_jit_mismatch():
    """A transform that behaves differently under jit must fail the suite."""
    def apply(p, s):
        traced = isinstance(jax.tree.leaves(p)[0], jax.core.Tracer)
        return jax.tree.map(lambda x: x + (1.0 if traced else 0.0), p)

    with pytest.raises(AssertionError):
        check_transform(lambda: Transform(lambda p: (), apply,
                                          lambda p, s, *, step, grads=None, key=None: s),
                        param_sets=("linen",))


def test_linen_fixture_paths():
    assert jc.selected_paths(linen_params()) == ["Dense_0/kernel", "Dense_1/kernel",
                                                  "Dense_2/kernel"]
