"""Every pruning transform through the shared conformance suite (incl. vmap over sparsity)."""

import pytest

from jaxcomp.core import schedules
from jaxcomp.prune import dst, pruner
from tests.conformance import check_transform

CASES = {
    "magnitude_layerwise": dict(score="magnitude"),
    "magnitude_global_l2": dict(score="magnitude", allocation="global", normalize="l2"),
    "magnitude_erk": dict(score="magnitude", allocation="erk"),
    "random": dict(score="random"),
    "snip": dict(score="snip"),
    "taylor": dict(score="taylor", gate=(1, 7, 3)),
    "movement": dict(score="movement", gate=(1, 7, 3)),
    "block": dict(score="magnitude", structure="block", block=(4, 4)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_pruner_conforms(name):
    kw = CASES[name]
    check_transform(lambda: pruner(sparsity=0.6, **kw),
                    hparam_factory=lambda s: pruner(sparsity=s, **kw),
                    hparam_values=[0.3, 0.8],
                    # NNX paths once (the pruner only sees path strings); linen for the rest
                    param_sets=("linen", "nnx") if name == "magnitude_layerwise" else ("linen",))


def test_gradual_schedule_conforms():
    def make(s):
        return pruner("magnitude", schedules.polynomial(0.0, s, begin=0, end=6, frequency=2))

    check_transform(lambda: make(0.9), hparam_factory=make, hparam_values=[0.5, 0.9],
                    param_sets=("linen",))


def test_nm_conforms():
    check_transform(lambda: pruner("magnitude", structure="n:m", n=2, m=4, axis=0),
                    param_sets=("linen",))


def test_per_path_map_conforms():
    check_transform(lambda: pruner("magnitude", {".*0/kernel": 0.9, ".*1/kernel": 0.5}),
                    param_sets=("linen",))


@pytest.mark.parametrize("method", ["set", "rigl"])
def test_dynamic_sparse_conforms(method):
    def make(s):
        return dst.dynamic_sparse(method, s, every=3, end=100)

    check_transform(lambda: make(0.7), hparam_factory=make, hparam_values=[0.5, 0.9],
                    param_sets=("linen",))


def _score_case(name):
    from jaxcomp.prune.scores import ACCUMULATES

    return dict(score=name, gate=(1, 7, 3)) if name in ACCUMULATES else dict(score=name)


def _check_score(name):
    kw = _score_case(name)
    check_transform(lambda: pruner(sparsity=0.6, **kw),
                    hparam_factory=lambda s: pruner(sparsity=s, **kw),
                    hparam_values=[0.3, 0.8], param_sets=("linen",))


def test_every_registered_score_conforms():
    from jaxcomp.prune.scores import SCORES

    assert list(SCORES)[:5] == ["magnitude", "random", "snip", "taylor", "movement"]
    for name in SCORES:
        _check_score(name)


def test_a_new_score_is_one_function_and_one_registration():
    """Registering a score makes it a pruner, a config method and a conformance case."""
    import jax.numpy as jnp
    import numpy as np

    from jaxcomp.experiment import base_config
    from jaxcomp.experiment.validate import validate_config
    from jaxcomp.prune.scores import SCORES, register_score, unregister_score

    @register_score("cube_magnitude")
    def _cube(w, g, key):
        return jnp.abs(w) ** 3

    try:
        assert "cube_magnitude" in SCORES
        _check_score("cube_magnitude")
        cfg = base_config()
        cfg.prune.method = "cube_magnitude"
        validate_config(cfg)
        v = np.array([3, -1, 4, -1.5, 5, -9, 2, -6, 5.3, -0.5, 8, -7], np.float32)
        w = {"Dense_0": {"kernel": jnp.asarray(v.reshape(3, 4))}}
        t = pruner("cube_magnitude", 0.5)
        st = t.update(w, t.init(w), step=0)
        kept = np.asarray(t.apply(w, st)["Dense_0"]["kernel"]) != 0
        np.testing.assert_array_equal(kept.ravel(), np.abs(v) >= 5)  # the 6 largest |w|
    finally:
        unregister_score("cube_magnitude")
    assert "cube_magnitude" not in SCORES


def test_a_gate_ending_before_it_begins_is_refused():
    from jaxcomp.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"end=10 comes before begin=100"):
        pruner("magnitude", 0.5, gate=(100, 10, 1))
    with pytest.raises(ConfigError, match=r"end=5 comes before begin=50"):
        dst.dynamic_sparse("set", 0.5, begin=50, every=3, end=5)
