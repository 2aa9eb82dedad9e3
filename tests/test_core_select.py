"""Selection rules, predicates and bool trees; errors name the rule and nearby paths."""

import jax.numpy as jnp
import pytest

from jaxcomp.core import ConfigError, resolve_rules, select, selected_paths
from tests.conformance import linen_params, nnx_params

PARAMS = {
    "Dense_0": {"kernel": jnp.ones((4, 3)), "bias": jnp.zeros(3)},
    "Dense_1": {"kernel": jnp.ones((3, 2)), "bias": jnp.zeros(2)},
    "BatchNorm_0": {"scale": jnp.ones(2)},
}


def test_default_selects_kernels_only():
    assert selected_paths(PARAMS) == ["Dense_0/kernel", "Dense_1/kernel"]


def test_first_full_match_wins_and_exclusion():
    assert selected_paths(PARAMS, ["!Dense_1/.*", ".*/kernel"]) == ["Dense_0/kernel"]
    # order matters: the inclusive rule first wins for Dense_1 too
    assert selected_paths(PARAMS, [".*/kernel", "!Dense_1/.*"]) == ["Dense_0/kernel",
                                                                     "Dense_1/kernel"]


def test_full_match_not_search():
    # "Dense_0" alone does not fully match "Dense_0/kernel"
    with pytest.raises(ConfigError, match="matches no parameter path"):
        selected_paths(PARAMS, ["Dense_0"])


def test_unmatched_rule_names_rule_and_nearest_paths():
    with pytest.raises(ConfigError) as e:
        selected_paths(PARAMS, [".*/kernel", "Dense_9/kernel"])
    msg = str(e.value)
    assert "Dense_9/kernel" in msg and "Dense_0/kernel" in msg


def test_predicate_and_bool_tree():
    pred = lambda path, leaf: leaf.shape == (3, 2)
    assert selected_paths(PARAMS, pred) == ["Dense_1/kernel"]
    bools = {"Dense_0": {"kernel": True, "bias": True}, "Dense_1": {"kernel": False,
                                                                     "bias": False},
             "BatchNorm_0": {"scale": False}}
    assert selected_paths(PARAMS, bools) == ["Dense_0/bias", "Dense_0/kernel"]


def test_bool_tree_wrong_structure():
    with pytest.raises(ConfigError, match="paths differ"):
        select(PARAMS, {"Dense_0": {"kernel": True}})


def test_selection_of_nothing_is_error():
    with pytest.raises(ConfigError, match="selects no parameter"):
        select(PARAMS, lambda p, x: False)


def test_bad_regex_and_bad_rule():
    with pytest.raises(ConfigError, match="not a valid regex"):
        select(PARAMS, ["Dense_(0"])
    with pytest.raises(ConfigError, match="not a pattern"):
        select(PARAMS, [3])


def test_resolve_rules_values():
    bits = resolve_rules(PARAMS, [("Dense_0/kernel", 4), (".*/kernel", 8)], default=None)
    assert bits["Dense_0/kernel"] == 4 and bits["Dense_1/kernel"] == 8
    assert bits["Dense_0/bias"] is None


def test_linen_and_nnx_paths():
    assert selected_paths(linen_params())[0] == "Dense_0/kernel"
    assert selected_paths(nnx_params()) == ["layers/0/kernel", "layers/1/kernel",
                                            "layers/2/kernel"]
