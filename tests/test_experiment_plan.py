"""Plans: what a family adds to a run, installed on a RunContext the same way by
run_experiment, the sweep runner and the sensitivity command."""

import types

import jax.numpy as jnp
import optax
import pytest

from jaxcomp.core.errors import ConfigError
from jaxcomp.core.transform import stateless
from jaxcomp.data import synthetic
from jaxcomp.experiment import base_config
from jaxcomp.experiment.plan import Plan, after_training, apply_plan, apply_plans, plan_of
from jaxcomp.experiment.run import RunContext
from jaxcomp.models import get_model


def _ctx():
    ds = synthetic(num_train=64, num_test=32)
    cfg = base_config()
    model = get_model("mlp", input_shape=ds.input_shape, num_classes=4, features=(8,))
    return RunContext(cfg, ds, model)


def test_plan_installs_every_part_and_optimizer_wrappers_nest():
    ctx = _ctx()
    seen = []
    t = stateless(lambda p: p)
    apply_plan(ctx, Plan("a", transform=t, loss_state={"w": jnp.ones(())},
                         optimizer=lambda tx: optax.chain(optax.clip(1.0), tx),
                         cached={"c": jnp.zeros(64)}, artifacts={"a_thing": 1},
                         after_train=lambda c: seen.append("a")))
    apply_plan(ctx, Plan("b", optimizer=lambda tx: optax.chain(optax.scale(2.0), tx),
                         after_train=lambda c: seen.append("b")))
    assert [n for n, _ in ctx.transforms] == ["a"] and ctx.artifacts["a_thing"] == 1
    assert set(ctx.cached) == {"c"} and float(ctx.loss_state["w"]) == 1.0
    tx = ctx.make_optimizer()
    st = tx.init({"w": jnp.zeros(2)})
    upd, _ = tx.update({"w": jnp.full(2, 10.0)}, st, {"w": jnp.zeros(2)})
    assert upd["w"].shape == (2,)  # clip(1) then scale(2) around adam: finite, nested
    after_training(ctx)
    assert seen == ["a", "b"]


def test_two_families_setting_the_same_loss_is_a_clear_error():
    ctx = _ctx()
    apply_plan(ctx, Plan("a", loss_fn=lambda logits, b: (0.0, {})))
    with pytest.raises(ConfigError, match=r"b: another family already set the run's loss_fn"):
        apply_plan(ctx, Plan("b", loss_fn=lambda logits, b: (1.0, {})))


def test_a_family_with_the_older_setup_hook_still_works_and_bad_plans_are_refused():
    ctx = _ctx()
    legacy = types.SimpleNamespace(
        setup=lambda cfg, c: c.transforms.append(("old", stateless(lambda p: p))),
        after_train=lambda cfg, c: c.metrics.update(old=cfg))
    plan = plan_of("old", legacy, "its-config", ctx)
    plan.after_train(ctx)
    assert [n for n, _ in ctx.transforms] == ["old"] and ctx.metrics["old"] == "its-config"
    bad = types.SimpleNamespace(plan=lambda cfg, c: {"transform": None})
    with pytest.raises(ConfigError, match=r"family 'bad': plan\(\) returned dict"):
        plan_of("bad", bad, None, ctx)


def test_apply_plans_plans_only_switched_on_families():
    ctx = _ctx()
    cfg = base_config()
    cfg.prune.method = "magnitude"
    cfg.train.epochs = 1
    plans = apply_plans(cfg, ctx)
    assert [p.family for p in plans] == ["prune"]
    assert "prune_transform" in ctx.artifacts
    params = {"Dense_0": {"kernel": jnp.ones((4, 4))}}
    st = ctx.make_optimizer().init(params)
    assert st._fields == ("inner",)  # masked_updates: the masks are not in the optimizer
    cs = ctx.transform.init(params)  # ... they are the pruner's state, in comp_state
    assert sorted(cs) == ["prune"] and sorted(cs["prune"]["pruner"]["masks"]) == [
        "Dense_0/kernel"]
