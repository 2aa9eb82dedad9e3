"""Schedules vs hand-computed values, under jit and vmap, as pytrees."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcomp.core import schedules as S
from jaxcomp.core.errors import ConfigError


def zhu_gupta(t, si, sf, t0, n_dt, dt):
    """The paper's formula, with updates every dt steps (reference)."""
    t = t0 + ((t - t0) // dt) * dt if t >= t0 else t
    p = min(max((t - t0) / n_dt, 0.0), 1.0)
    return sf + (si - sf) * (1 - p) ** 3


@pytest.mark.parametrize("use_jit", [False, True])
def test_polynomial_matches_zhu_gupta(use_jit):
    s = S.polynomial(0.0, 0.9, begin=100, end=1100, power=3, frequency=100)
    f = jax.jit(s.__call__) if use_jit else s.__call__
    for t in [0, 99, 100, 150, 200, 555, 1099, 1100, 5000]:
        assert float(f(t)) == pytest.approx(zhu_gupta(t, 0.0, 0.9, 100, 1000, 100), abs=1e-6)


def test_linear_cosine_constant_oneshot():
    assert float(S.linear(1.0, 3.0, 0, 10)(5)) == pytest.approx(2.0)
    assert float(S.cosine(1.0, 0.0, 0, 10)(5)) == pytest.approx(0.5)
    assert float(S.cosine(1.0, 0.0, 0, 10)(10)) == pytest.approx(0.0, abs=1e-7)
    assert float(S.constant(0.7)(123)) == pytest.approx(0.7)
    one = S.one_shot(0.8, at=10)
    assert float(one(9)) == 0.0 and float(one(10)) == pytest.approx(0.8)


def test_schedule_is_pytree_and_vmaps():
    s = S.to_arrays(S.cubic(0.0, 0.5, 0, 100))
    finals = jnp.array([0.5, 0.8, 0.9])
    batched = jax.tree.map(lambda x: jnp.broadcast_to(x, (3,)), s)
    batched = type(s)(**{**batched.__dict__, "final": finals})
    out = jax.vmap(lambda sch: sch(100))(batched)
    np.testing.assert_allclose(out, finals, rtol=1e-6)


def test_as_schedule():
    assert isinstance(S.as_schedule(0.3), S.Constant)
    s = S.cosine(0, 1)
    assert S.as_schedule(s) is s


@pytest.mark.parametrize("make", [
    lambda: S.Polynomial(0.0, 0.9, begin=100, end=10),
    lambda: S.Cosine(0.5, 0.0, begin=50, end=5),
    lambda: S.gate(100, 10, 1),
])
def test_schedules_built_directly_refuse_end_before_begin(make):
    with pytest.raises(ConfigError, match=r"end=\d+ comes before begin=\d+"):
        make()


def test_unflattening_a_schedule_checks_nothing():
    """JAX rebuilds a state's schedule from a jitted step's outputs after every step: a
    check there would read them back to the host and wait for the step to finish."""
    s = S.polynomial(0.0, 0.9, begin=0, end=100)
    leaves, tree = jax.tree.flatten(s)
    back = jax.tree.unflatten(tree, [object()] * len(leaves))  # placeholders, unchecked
    assert type(back) is S.Polynomial and back.end is not s.end
    swapped = jax.tree.unflatten(tree, [0.0, 0.9, 100, 10, 3.0, 1])  # end < begin
    assert (swapped.begin, swapped.end) == (100, 10)
    with pytest.raises(ConfigError, match="end=10 comes before begin=100"):
        S.Polynomial(*jax.tree.leaves(swapped))
    paths = [jax.tree_util.keystr(k) for k, _ in jax.tree_util.tree_flatten_with_path(s)[0]]
    assert paths == [".init", ".final", ".begin", ".end", ".power", ".frequency"]


@pytest.mark.parametrize("use_jit", [True, False])
def test_gate_opens_every_k_steps_between_begin_and_end(use_jit):
    g = S.gate(3, 11, 4)
    fn = jax.jit(S.gate_open) if use_jit else S.gate_open
    opened = [s for s in range(20) if bool(fn(g, s))]
    assert opened == [s for s in range(3, 12) if (s - 3) % 4 == 0] == [3, 7, 11]
