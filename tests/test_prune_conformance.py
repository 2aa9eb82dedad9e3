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
