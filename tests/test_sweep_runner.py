"""The runner: vectorized == one-by-one (within float tolerance), one compile per group,
resume without duplicates, divergence recorded, fallback when a number is baked in."""

import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxcomp.core.errors import ConfigError
from jaxcomp.core.transform import Transform, stateless
from jaxcomp.experiment import base_config, families
from jaxcomp.sweep.grid import product, zip_
from jaxcomp.sweep.runner import SweepRunner, vector_keys
from jaxcomp.sweep.store import ResultStore
from jaxcomp.sweep.vectorized import stack, unstack
from jaxcomp.train.losses import correct, per_example_nll


def _scale_in_state(factor):
    def init(params):
        return {"factor": jnp.asarray(factor, jnp.float32)}

    def apply(params, state):
        return jax.tree.map(lambda x: x * state["factor"], params)

    return Transform(init, apply, lambda p, s, *, step, grads=None, key=None: s)


def _setup(cfg, ctx):
    if cfg.method == "state":  # the swept number lives in the transform state and loss state
        ctx.transforms.append(("toy", _scale_in_state(cfg.factor)))
        ctx.loss_state = {"w": jnp.asarray(cfg.factor, jnp.float32)}
        # per-example weights served like distill's cached teacher logits
        ctx.cached = {"ex_w": np.linspace(0.5, 1.5, len(ctx.dataset.x_train),
                                          dtype=np.float32)}

        def loss(logits, batch):
            w = batch["loss_state"]["w"]
            nll = per_example_nll(logits, batch["y"])
            return w * jnp.mean(batch["ex_w"] * nll), {
                "accuracy": jnp.mean(correct(logits, batch["y"]))}

        ctx.loss_fn = loss
    elif cfg.method == "baked":  # the number is a Python constant: cannot be vmapped
        f = float(cfg.factor)
        ctx.transforms.append(("toy", stateless(lambda p: jax.tree.map(lambda x: x * f, p))))


def _after_train(cfg, ctx):
    ctx.metrics["toy_factor_seen"] = float(ctx.fit_result.state.comp_state["toy"]["factor"]) \
        if cfg.method == "state" else float(cfg.factor)


def _validate(cfg):
    if cfg.factor < 0:
        raise ConfigError(f"toy.factor: got {cfg.factor}; allowed range [0, inf)")


TOY = types.SimpleNamespace(
    VECTOR_KEYS=("factor",), validate=_validate,
    default_config=lambda: ml_collections.ConfigDict({"method": "none", "factor": 1.0}),
    setup=_setup, after_train=_after_train)


@pytest.fixture
def toy_family(monkeypatch):
    monkeypatch.setattr(families, "available", lambda: {"toy": TOY})


def tiny_config(epochs=3, lr=1e-2, optimizer="adam"):
    c = base_config()
    c.data.name = "synthetic"
    c.model.name = "mlp"
    with c.unlocked():
        c.model.features = (16,)
    c.train.epochs = epochs
    c.train.batch_size = 64
    c.train.learning_rate = lr
    c.train.optimizer = optimizer
    return c


def _by_setting(out_dir):
    return {tuple(sorted(r["setting"].items())): r for r in ResultStore(out_dir).records()}


def test_vector_keys_include_family_keys(toy_family):
    assert vector_keys() == {"seed", "train.learning_rate", "toy.factor"}


def test_vectorized_equals_one_by_one(toy_family, tmp_path):
    cfg = tiny_config()
    cfg.toy.method = "state"
    # three settings in chunks of two: the second chunk is padded, still one compile
    spec = zip_({"toy.factor": [0.5, 1.5, 1.5]}, {"seed": [0, 0, 1]})
    vec = SweepRunner(cfg, spec, str(tmp_path / "v"), progress=False, chunk_size=2)
    sv = vec.run()
    seq = SweepRunner(cfg, spec, str(tmp_path / "s"), progress=False, vectorize=False)
    ss = seq.run()
    assert (sv["vectorized"], sv["sequential"]) == (3, 0)
    assert (ss["vectorized"], ss["sequential"]) == (0, 3)
    assert vec.compiles == 1
    a, b = _by_setting(tmp_path / "v"), _by_setting(tmp_path / "s")
    assert a.keys() == b.keys() and len(a) == 3
    for k in a:
        ma, mb = a[k]["metrics"], b[k]["metrics"]
        for m in ("test_accuracy", "test_nll", "train_loss", "train_accuracy"):
            np.testing.assert_allclose(ma[m], mb[m], rtol=2e-4, atol=2e-5, err_msg=f"{k} {m}")
        assert ma["toy_factor_seen"] == mb["toy_factor_seen"] == dict(k)["toy.factor"]
        assert a[k]["ledger"]["nonzeros"] == b[k]["ledger"]["nonzeros"]
        assert a[k]["ledger"]["flops"] == b[k]["ledger"]["flops"]
        assert a[k]["key"] == b[k]["key"]
        assert a[k]["path"] == "vectorized" and b[k]["path"] == "sequential"
    # different seeds / factors really gave different runs
    assert len({r["metrics"]["test_nll"] for r in a.values()}) == 3


def test_baked_number_falls_back_to_one_by_one(toy_family, tmp_path):
    cfg = tiny_config(epochs=1)
    cfg.toy.method = "baked"
    r = SweepRunner(cfg, product({"toy.factor": [0.5, 2.0]}), str(tmp_path), progress=False)
    s = r.run()
    assert (s["vectorized"], s["sequential"]) == (0, 2)
    recs = ResultStore(tmp_path).records()
    assert all("not held in the compression, optimizer or loss state" in x["path_reason"]
               for x in recs)
    assert recs[0]["metrics"]["test_nll"] != recs[1]["metrics"]["test_nll"]


def test_plans_static_parts_decide_the_group(tmp_path, monkeypatch):
    """A family's plan declares what of its setting is static: settings whose plans'
    static parts differ are not vmapped together, even with equal configs minus vector
    keys (here the static part depends on a vector key's value). The group is split by
    static part, and each part with two or more settings is vmapped on its own."""
    from jaxcomp.experiment.plan import Plan

    def plan(cfg, ctx):
        return Plan("toy", transform=_scale_in_state(cfg.factor),
                    static={"regime": "big" if cfg.factor > 1 else "small"})

    fam = types.SimpleNamespace(VECTOR_KEYS=("factor",), validate=_validate,
                                default_config=TOY.default_config, plan=plan)
    monkeypatch.setattr(families, "available", lambda: {"toy": fam})
    cfg = tiny_config(epochs=1)
    cfg.toy.method = "state"
    logs = []
    runner = SweepRunner(cfg, product({"toy.factor": [0.5, 2.0, 0.25, 3.0, 0.75]}),
                         str(tmp_path / "a"), progress=False, log=logs.append)
    setups = []
    setup = runner._setup
    monkeypatch.setattr(runner, "_setup", lambda runs: setups.append(len(runs)) or setup(runs))
    s = runner.run()
    assert (s["vectorized"], s["sequential"]) == (5, 0)
    assert runner.compiles == 2  # one program per static part
    assert setups == [5]  # the parts reuse what the whole group set up
    assert any("2 different static parts; split" in m for m in logs), logs
    recs = ResultStore(tmp_path / "a").records()
    groups = {}
    for r in recs:
        groups.setdefault(r["group"], set()).add(r["config"]["toy"]["factor"])
    assert sorted(map(sorted, groups.values())) == [[0.25, 0.5, 0.75], [2.0, 3.0]]
    # the same settings one by one give the same numbers
    one = SweepRunner(cfg, product({"toy.factor": [0.5, 2.0, 0.25, 3.0, 0.75]}),
                      str(tmp_path / "b"), progress=False, vectorize=False).run()
    assert one["sequential"] == 5
    a, b = _by_setting(tmp_path / "a"), _by_setting(tmp_path / "b")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k]["metrics"]["test_nll"], b[k]["metrics"]["test_nll"],
                                   rtol=2e-4, atol=2e-5)
    # a part of one setting trains alone, and says why
    s = SweepRunner(cfg, product({"toy.factor": [0.5, 2.0, 3.0]}), str(tmp_path / "c"),
                    progress=False).run()
    assert (s["vectorized"], s["sequential"]) == (2, 1)
    lone = [r for r in ResultStore(tmp_path / "c").records() if r["path"] == "sequential"]
    assert [r["config"]["toy"]["factor"] for r in lone] == [0.5]
    assert lone[0]["path_reason"] == "a group of one setting"


def test_prune_seed_is_held_in_the_compression_state(tmp_path):
    """prune.seed seeds the pruner's key, which lives in the compression state: a sweep
    over it is vectorized, and equals the runs one by one."""
    cfg = tiny_config(epochs=2)
    cfg.prune.method = "random"
    cfg.prune.schedule = "one_shot"
    cfg.prune.sparsity = 0.5
    spec = product({"prune.seed": [0, 1]})
    vec = SweepRunner(cfg, spec, str(tmp_path / "v"), progress=False)
    sv = vec.run()
    ss = SweepRunner(cfg, spec, str(tmp_path / "s"), progress=False, vectorize=False).run()
    assert (sv["vectorized"], ss["sequential"]) == (2, 2) and vec.compiles == 1
    a, b = _by_setting(tmp_path / "v"), _by_setting(tmp_path / "s")
    for k in a:
        np.testing.assert_allclose(a[k]["metrics"]["test_nll"], b[k]["metrics"]["test_nll"],
                                   rtol=2e-4, atol=2e-5)
    assert len({r["metrics"]["test_nll"] for r in a.values()}) == 2  # other masks


def test_resume_skips_finished_runs_without_duplicates(tmp_path):
    cfg = tiny_config(epochs=1)
    spec = product({"seed": [0, 1, 2]})
    placed = []

    def place(tree):  # the device-placement hook sees the stacked settings axis first
        placed.append({jax.tree.leaves(tree)[0].shape[0]})
        return tree

    first = SweepRunner(cfg, spec, str(tmp_path), progress=False, place=place).run()
    assert first["ran"] == 3 and first["compiles"] == 1
    assert placed == [{3}]
    lines = (tmp_path / "results.jsonl").read_text()
    again = SweepRunner(cfg, spec, str(tmp_path), progress=False).run()
    assert (again["skipped"], again["ran"]) == (3, 0)
    assert (tmp_path / "results.jsonl").read_text() == lines
    # a grown grid is another sweep: refused with a clear message
    with pytest.raises(ConfigError, match="holds results of another sweep"):
        SweepRunner(cfg, product({"seed": [0, 1, 2, 3]}), str(tmp_path), progress=False)


def test_divergence_is_recorded_and_sweep_goes_on(toy_family, tmp_path):
    cfg = tiny_config(epochs=2)
    cfg.toy.method = "state"  # factor 1e30 scales weights and loss: NaN in the first epoch
    spec = product({"toy.factor": [1e30, 1.0]}, {"seed": [0]})
    s = SweepRunner(cfg, spec, str(tmp_path), progress=False).run()
    assert s["ran"] == 2 and s["diverged"] == 1 and s["vectorized"] == 2
    for r in ResultStore(tmp_path).records():
        if r["setting"]["toy.factor"] > 1:
            assert r["status"] == "diverged"
            assert r["metrics"]["diverged_step"] == 512 // 64  # NaN after the first epoch
            assert "test_accuracy" not in r["metrics"]
        else:
            assert r["status"] == "ok" and r["metrics"]["test_accuracy"] > 0.5


def test_record_fields(tmp_path):
    import jaxcomp

    cfg = tiny_config(epochs=1)
    SweepRunner(cfg, product({"seed": [4]}), str(tmp_path), progress=False,
                tensorboard=True).run()
    (r,) = ResultStore(tmp_path).records()
    events = list((tmp_path / "tb" / r["key"]).glob("events.out.tfevents*"))
    assert len(events) == 1 and events[0].stat().st_size > 0
    assert r["version"] == jaxcomp.__version__ and r["commit"]
    assert r["seed"] == 4 and r["config"]["seed"] == 4 and r["setting"] == {"seed": 4}
    assert r["path"] == "sequential" and r["path_reason"] == "a group of one setting"
    assert {"params", "nonzeros", "bytes", "flops"} <= set(r["ledger"])
    assert r["timings"]["train_seconds"] > 0


def test_stack_unstack_roundtrip():
    trees = [{"a": jnp.full((2,), i), "k": jax.random.key(i)} for i in range(3)]
    st = stack(trees)
    assert st["a"].shape == (3, 2)
    back = unstack(st, 3)
    for t, b in zip(trees, back, strict=True):
        np.testing.assert_array_equal(t["a"], b["a"])
        np.testing.assert_array_equal(jax.random.key_data(t["k"]), jax.random.key_data(b["k"]))


def test_bad_runner_arguments(tmp_path):
    with pytest.raises(ConfigError, match="chunk_size"):
        SweepRunner(tiny_config(), None, str(tmp_path), chunk_size=0)
    with pytest.raises(ConfigError, match="vectorize"):
        SweepRunner(tiny_config(), None, str(tmp_path), vectorize="yes")


def test_tensorboard_missing_is_a_clear_error(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    with pytest.raises(ConfigError, match=r"--tensorboard needs tensorboardX: pip install"):
        SweepRunner(tiny_config(), None, str(tmp_path), tensorboard=True)
    assert not (tmp_path / "results.jsonl").exists()


def test_family_validation_runs_before_anything(toy_family, tmp_path):
    cfg = tiny_config()
    cfg.toy.method = "state"
    with pytest.raises(ConfigError, match=r"toy.factor: got -1.0"):
        SweepRunner(cfg, product({"toy.factor": [1.0, -1.0]}), str(tmp_path / "o"))
    assert not (tmp_path / "o").exists()


def test_failing_vectorized_program_falls_back_to_one_by_one(tmp_path, monkeypatch):
    import jaxcomp.sweep.group_training as runner_mod

    def boom(*args, **kwargs):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(runner_mod, "train_stacked", boom)
    s = SweepRunner(tiny_config(epochs=1), product({"seed": [0, 1]}), str(tmp_path),
                    progress=False).run()
    assert (s["vectorized"], s["sequential"], s["error"]) == (0, 2, 0)
    recs = ResultStore(tmp_path).records()
    assert [r["seed"] for r in recs] == [0, 1]
    assert all("vectorized program failed: RuntimeError: out of memory" in r["path_reason"]
               for r in recs)


def test_settings_differing_only_after_training_share_one_training(toy_family, tmp_path):
    cfg = tiny_config(epochs=1)
    cfg.toy.method = "after"  # like PTQ bit widths: the factor is used only in after_train
    s = SweepRunner(cfg, product({"toy.factor": [1.0, 2.0, 3.0]}), str(tmp_path),
                    progress=False).run()
    assert s["vectorized"] == 3
    recs = ResultStore(tmp_path).records()
    assert [r["metrics"]["toy_factor_seen"] for r in recs] == [1.0, 2.0, 3.0]
    assert len({r["metrics"]["test_nll"] for r in recs}) == 1  # one training, shared
    assert all("training shared by 3 settings" in r["path_reason"] for r in recs)


def test_mesh_path_on_one_device_matches_plain_and_shares_keys(tmp_path):
    """The sharded program (settings over `sweep`, batches over `data`) on a
    1-device mesh gives the plain program's numbers; a run's key leaves out the
    config's mesh block, so a sweep started on one mesh resumes on another."""
    from jaxcomp.distributed import make_mesh

    cfg = tiny_config(epochs=2)
    spec = product({"seed": [0, 1, 2]})
    plain = SweepRunner(cfg, spec, str(tmp_path / "plain"), progress=False)
    plain.run()
    meshed = SweepRunner(cfg, spec, str(tmp_path / "mesh"), progress=False,
                         mesh=make_mesh({"sweep": 1, "data": 1}))
    s = meshed.run()
    assert (s["vectorized"], meshed.compiles) == (3, 1)
    a, b = ResultStore(tmp_path / "plain").records(), ResultStore(tmp_path / "mesh").records()
    assert [r["key"] for r in a] == [r["key"] for r in b]
    for x, y in zip(a, b, strict=True):
        for m in ("test_nll", "train_loss", "test_accuracy"):
            assert abs(x["metrics"][m] - y["metrics"][m]) < 1e-5
    other = cfg.copy_and_resolve_references()
    with other.unlocked():
        other.mesh.sweep, other.mesh.data = 1, 1
    again = SweepRunner(other, spec, str(tmp_path / "mesh"), progress=False).run()
    assert (again["skipped"], again["ran"]) == (3, 0)


@pytest.mark.parametrize("optimizer", ["adam", "momentum"])
def test_learning_rate_sweep_is_one_program_equal_to_one_by_one(optimizer, tmp_path):
    """The learning rate lives in the optimizer state, so settings that differ in it
    (and the seed) share one compiled program and give the one-by-one numbers."""
    cfg = tiny_config(epochs=2, optimizer=optimizer)
    spec = product({"train.learning_rate": [1e-3, 3e-2]}, {"seed": [0, 1]})
    vec = SweepRunner(cfg, spec, str(tmp_path / "v"), progress=False)
    sv = vec.run()
    assert (sv["vectorized"], sv["sequential"], vec.compiles) == (4, 0, 1)
    SweepRunner(cfg, spec, str(tmp_path / "s"), progress=False, vectorize=False).run()
    a, b = _by_setting(tmp_path / "v"), _by_setting(tmp_path / "s")
    assert a.keys() == b.keys() and len(a) == 4
    for k in a:
        for m in ("test_nll", "train_loss"):
            np.testing.assert_allclose(a[k]["metrics"][m], b[k]["metrics"][m], rtol=2e-4,
                                       atol=2e-5, err_msg=f"{k} {m}")
    by_lr = {}
    for k, r in a.items():
        by_lr.setdefault(dict(k)["train.learning_rate"], []).append(r["metrics"]["train_loss"])
    assert by_lr[1e-3] != by_lr[3e-2]  # the rates really differ inside the one program
