"""Step counters shared by every setting stay unbatched in the vectorized program, so a
step-gated mask update (gradual pruning every Δt steps) remains a real branch under vmap
— and the vectorized sweep still equals running the settings one by one."""

import jax.numpy as jnp
import numpy as np

from jaxcomp.engine.programs import shared_leaves as _shared_leaves
from jaxcomp.experiment import base_config
from jaxcomp.sweep import group_training as runner
from jaxcomp.sweep.grid import product
from jaxcomp.sweep.runner import SweepRunner
from jaxcomp.sweep.store import ResultStore


def test_shared_leaves_are_equal_small_integers():
    state = {"count": jnp.array([3, 3, 3], jnp.int32),
             "differs": jnp.array([1, 2, 3], jnp.int32),
             "float": jnp.zeros((3,), jnp.float32),
             "gate": jnp.array([[0, 100], [0, 100], [0, 100]], jnp.int32),
             "big": jnp.zeros((3, 1000), jnp.int32)}
    got = dict(zip(sorted(state), _shared_leaves(state), strict=True))
    assert got == {"big": False, "count": True, "differs": False, "float": False,
                   "gate": True}


def _cfg():
    c = base_config()
    c.data.name = "digits"
    c.model.name = "mlp"
    with c.unlocked():
        c.model.features = (32,)
    c.train.epochs = 2
    c.train.batch_size = 64
    c.prune.method = "magnitude"
    c.prune.schedule = "gradual"
    c.prune.frequency = 5
    return c


def test_gradual_pruning_sweep_vectorized_equals_one_by_one(tmp_path, monkeypatch):
    made = []

    class Recorded(runner.VectorizedProgram):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            made.append(self)

    monkeypatch.setattr(runner, "VectorizedProgram", Recorded)
    spec = product({"prune.sparsity": [0.5, 0.8, 0.95]})
    vec = SweepRunner(_cfg(), spec, str(tmp_path / "v"), progress=False)
    sv = vec.run()
    assert sv["vectorized"] == 3 and vec.compiles == 1
    assert len(made) == 1 and any(made[0]._shared), "no state leaf was kept unbatched"
    seq = SweepRunner(_cfg(), spec, str(tmp_path / "s"), progress=False, vectorize=False)
    assert seq.run()["sequential"] == 3

    def by_setting(d):
        return {r["setting"]["prune.sparsity"]: r for r in ResultStore(d).records()}

    a, b = by_setting(tmp_path / "v"), by_setting(tmp_path / "s")
    assert a.keys() == b.keys() == {0.5, 0.8, 0.95}
    for k in a:
        assert a[k]["ledger"]["nonzeros"] == b[k]["ledger"]["nonzeros"], k
        for m in ("test_accuracy", "test_nll", "train_loss"):
            np.testing.assert_allclose(a[k]["metrics"][m], b[k]["metrics"][m], rtol=2e-4,
                                       atol=2e-5, err_msg=f"{k} {m}")
    # the sparsities really differ
    assert len({r["ledger"]["nonzeros"] for r in a.values()}) == 3
