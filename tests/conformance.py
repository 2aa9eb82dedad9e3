"""The conformance suite every jaxcomp transform is run through.

``check_transform(factory)`` asserts, on a linen param dict and on an NNX
``State`` of the same MLP:

1. ``init``, ``apply`` and ``update`` give the same results under ``jax.jit``
   as without it;
2. a second call (with new values of the same shapes, and a new step) does not
   retrace — and ``update`` keeps the state's structure, shapes and dtypes;
3. the state is a pytree whose leaves are all arrays;
4. ``apply`` returns params of the same structure, shapes and dtypes;
5. with ``hparam_factory``, hyper-parameters held as arrays can be
   ``jax.vmap``-ed over, and the vmapped result equals the one-by-one results.

Family test files call it, e.g. ``tests/test_prune_conformance.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcomp.core.transform import Transform

MLP_SIZES = (16, 32, 24, 8)


def linen_params(seed: int = 0) -> dict:
    """A linen-style MLP param dict ``Dense_i/{kernel,bias}``."""
    import flax.linen as nn

    from jaxcomp.models.mlp import MLP

    m = MLP(features=MLP_SIZES[1:-1], num_classes=MLP_SIZES[-1])
    return m.init(jax.random.key(seed), jnp.ones((1, MLP_SIZES[0])))["params"] \
        if isinstance(m, nn.Module) else None


def nnx_params(seed: int = 0):
    """The NNX ``State`` of the same MLP (paths ``layers/i/{kernel,bias}``)."""
    from flax import nnx

    from jaxcomp.models.mlp import NNXMLP

    m = NNXMLP(MLP_SIZES[0], MLP_SIZES[1:-1], MLP_SIZES[-1], rngs=nnx.Rngs(seed))
    _, params, _ = nnx.split(m, nnx.Param, ...)
    return params


PARAM_SETS = {"linen": linen_params, "nnx": nnx_params}


def random_like(tree: Any, seed: int) -> Any:
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(treedef, [jax.random.normal(k, x.shape, x.dtype)
                                        for k, x in zip(keys, leaves, strict=True)])


def assert_trees_close(a: Any, b: Any, atol: float = 1e-6, rtol: float = 1e-6) -> None:
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    assert ta == tb, f"tree structures differ:\n{ta}\n{tb}"
    for x, y in zip(la, lb, strict=True):
        x, y = np.asarray(x), np.asarray(y)
        assert x.shape == y.shape and x.dtype == y.dtype, (x.shape, x.dtype, y.shape, y.dtype)
        if x.dtype == bool or np.issubdtype(x.dtype, np.integer):
            np.testing.assert_array_equal(x, y)
        else:
            np.testing.assert_allclose(x, y, atol=atol, rtol=rtol)


def assert_same_avals(a: Any, b: Any, what: str) -> None:
    sa = jax.tree.map(lambda x: (jnp.shape(x), jnp.result_type(x)), a)
    sb = jax.tree.map(lambda x: (jnp.shape(x), jnp.result_type(x)), b)
    assert jax.tree.structure(a) == jax.tree.structure(b), f"{what}: structure changed"
    assert jax.tree.leaves(sa) == jax.tree.leaves(sb), f"{what}: shapes/dtypes changed"


def _is_array(x: Any) -> bool:
    return isinstance(x, jax.Array | np.ndarray)


def check_transform(
    factory: Callable[[], Transform],
    *,
    param_sets: Sequence[str] = ("linen", "nnx"),
    hparam_factory: Callable[[Any], Transform] | None = None,
    hparam_values: Sequence[Any] = (),
    steps: Sequence[int] = (0, 1, 7),
    use_grads: bool = True,
    use_key: bool = True,
    atol: float = 1e-5,
) -> None:
    """Run the whole suite on the transform built by ``factory()``."""
    for name in param_sets:
        params = PARAM_SETS[name]()
        _check_one(factory, params, steps, use_grads, use_key, atol, name)
        if hparam_factory is not None:
            _check_vmap(hparam_factory, hparam_values, params, steps, use_grads, use_key,
                        atol, name)


def _update_kwargs(step, params, use_grads, use_key, seed):
    kw = {"step": jnp.asarray(step, jnp.int32)}
    if use_grads:
        kw["grads"] = random_like(params, 100 + seed)
    if use_key:
        kw["key"] = jax.random.key(200 + seed)
    return kw


def _check_one(factory, params, steps, use_grads, use_key, atol, name):
    t = factory()
    # 1. jit == no jit, following a few update steps
    state = t.init(params)
    state_j = jax.jit(t.init)(params)
    assert_trees_close(state, state_j, atol=atol)
    leaves = jax.tree.leaves(state)
    assert all(_is_array(x) for x in leaves), \
        f"[{name}] state leaves must be arrays: {[type(x) for x in leaves]}"
    out = t.apply(params, state)
    assert_trees_close(out, jax.jit(t.apply)(params, state), atol=atol)
    assert_same_avals(out, params, f"[{name}] apply output")

    traces = {"apply": 0, "update": 0}

    def apply_counted(p, s):
        traces["apply"] += 1
        return t.apply(p, s)

    def update_counted(p, s, kw):
        traces["update"] += 1
        return t.update(p, s, **kw)

    apply_j = jax.jit(apply_counted)
    update_j = jax.jit(update_counted)
    s_eager, s_jit = state, state
    for i, step in enumerate(steps):
        p = jax.tree.map(lambda x, r: x + 0.01 * r, params, random_like(params, i))
        kw = _update_kwargs(step, params, use_grads, use_key, i)
        s_eager = t.update(p, s_eager, **kw)
        s_jit = update_j(p, s_jit, kw)
        assert_trees_close(s_eager, s_jit, atol=atol)
        assert_same_avals(s_jit, state, f"[{name}] state after update at step {step}")
        assert_trees_close(t.apply(p, s_eager), apply_j(p, s_jit), atol=atol)
    # 2. no retrace on later calls
    assert traces["apply"] == 1, f"[{name}] apply traced {traces['apply']} times"
    assert traces["update"] == 1, f"[{name}] update traced {traces['update']} times"


def _check_vmap(hfactory, values, params, steps, use_grads, use_key, atol, name):
    assert len(values) >= 2, "give at least two hyper-parameter values"
    hs = jnp.asarray(values)

    def run(h):
        t = hfactory(h)
        s = t.init(params)
        for i, step in enumerate(steps):
            s = t.update(params, s, **_update_kwargs(step, params, use_grads, use_key, i))
        return t.apply(params, s)

    batched = jax.jit(jax.vmap(run))(hs)
    for i, h in enumerate(values):
        one = run(jnp.asarray(h))
        assert_trees_close(jax.tree.map(lambda x, i=i: x[i], batched), one, atol=atol)
