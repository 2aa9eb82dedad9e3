"""Path strings for dicts, lists, NNX state; replace/unflatten helpers."""

import jax.numpy as jnp
import pytest

from jaxcomp.core import paths
from tests.conformance import nnx_params


def test_flatten_dict_and_list():
    tree = {"a": [jnp.ones(1), {"b": jnp.zeros(2)}], "c": jnp.ones(())}
    assert paths.all_paths(tree) == ["a/0", "a/1/b", "c"]


def test_nnx_drops_trailing_value():
    ps = paths.all_paths(nnx_params())
    assert "layers/0/kernel" in ps and not any(p.endswith("/value") for p in ps)


def test_replace_and_unknown_path():
    tree = {"a": jnp.ones(2), "b": jnp.ones(3)}
    out = paths.replace(tree, {"a": jnp.zeros(2)})
    assert float(out["a"].sum()) == 0 and float(out["b"].sum()) == 3
    with pytest.raises(KeyError, match="zz"):
        paths.replace(tree, {"zz": 1})


def test_unflatten_like_and_path_dict_roundtrip():
    tree = {"x": {"k": jnp.arange(3.0)}, "y": jnp.ones(2)}
    d = paths.path_dict(tree)
    assert sorted(d) == ["x/k", "y"]
    back = paths.unflatten_like(tree, d)
    assert jnp.array_equal(back["x"]["k"], tree["x"]["k"])


def test_map_with_path():
    tree = {"a": jnp.ones(2), "b": {"c": jnp.ones(2)}}
    out = paths.map_with_path(lambda p, x: x * (2 if p == "b/c" else 1), tree)
    assert float(out["b"]["c"][0]) == 2 and float(out["a"][0]) == 1
