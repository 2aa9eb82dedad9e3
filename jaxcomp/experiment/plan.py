"""A family's plan for one run: everything it adds, as typed values.

Each compression family turns its config section into a :class:`Plan` before
training: a compression :class:`~jaxcomp.core.transform.Transform` (its state
is the train state's ``comp_state``), an optimizer wrapper (pruning keeps its
masks in the optimizer state), a loss and the numbers it reads
(``loss_state``, vmappable), per-example arrays (``cached``, e.g. a teacher's
logits: an explicit pytree, never a closure), a replacement model (activation
quantization), a post-training step that adds its metrics and ledger rows, and
its static part (``static``: what of the setting decides the compiled program —
by default the family's config section without its ``VECTOR_KEYS``, the numbers
held in the states); a sweep vectorizes settings whose plans' static parts are equal.
:func:`apply_plans` installs them on a :class:`~jaxcomp.experiment.RunContext`;
``run_experiment``, the sweep runner and ``jaxcomp sensitivity`` all go through it.

Example:
    >>> import optax
    >>> p = Plan("toy", optimizer=lambda tx: optax.chain(optax.clip(1.0), tx))
    >>> p.family, p.transform is None, callable(p.optimizer)
    ('toy', True, True)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import optax

from jaxcomp.core.errors import ConfigError
from jaxcomp.core.transform import Transform


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one family contributes to one run (see the module docstring)."""

    family: str
    transform: Transform | None = None
    optimizer: Callable[[optax.GradientTransformation], optax.GradientTransformation] | None = None
    loss_fn: Callable | None = None
    loss_state: Any = None
    cached: Mapping[str, Any] | None = None
    model: Any = None
    after_train: Callable[[Any], None] | None = None
    artifacts: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    static: Any = None


def static_part(section: Any, vector_keys: Any = ()) -> dict[str, Any]:
    """A family's default static part: its config section as a dict without the
    ``vector_keys`` (relative dotted names), the numbers its states hold.

    Example:
        >>> import ml_collections
        >>> static_part(ml_collections.ConfigDict({"method": "magnitude", "sparsity": 0.9}),
        ...             ("sparsity",))
        {'method': 'magnitude'}
    """
    d = section.to_dict() if hasattr(section, "to_dict") else dict(section)
    for key in vector_keys:
        *parents, last = key.split(".")
        node = d
        for p in parents:
            node = node.get(p, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(last, None)
    return d


def plan_of(name: str, family: Any, cfg: Any, ctx: Any) -> Plan:
    """``family.plan(cfg, ctx)``; a family module written before plans existed (a
    ``setup(cfg, ctx)`` that edits the context itself) is run and wrapped."""
    if hasattr(family, "plan"):
        plan = family.plan(cfg, ctx)
        if not isinstance(plan, Plan):
            raise ConfigError(f"family {name!r}: plan() returned {type(plan).__name__}; "
                              "it must return a jaxcomp.experiment.plan.Plan")
        return plan
    family.setup(cfg, ctx)
    after = getattr(family, "after_train", None)
    return Plan(name, after_train=None if after is None else (lambda c, a=after: a(cfg, c)))


def apply_plan(ctx: Any, plan: Plan) -> None:
    """Install ``plan`` on ``ctx`` (transforms chain in family order; optimizer
    wrappers nest; one family may set the loss, the cached arrays, the model)."""
    for field, value in (("loss_fn", plan.loss_fn), ("cached", plan.cached),
                         ("loss_state", plan.loss_state)):
        if value is not None and getattr(ctx, field) is not None:
            raise ConfigError(f"{plan.family}: another family already set the run's "
                              f"{field}; switch one of them off")
        if value is not None:
            setattr(ctx, field, dict(value) if field == "cached" else value)
    if plan.transform is not None:
        ctx.transforms.append((plan.family, plan.transform))
    if plan.optimizer is not None:
        base, wrap = ctx.make_optimizer, plan.optimizer

        def make_optimizer(learning_rate: float | None = None) -> optax.GradientTransformation:
            return wrap(base(learning_rate))

        ctx.make_optimizer = make_optimizer
    if plan.model is not None:
        ctx.model = plan.model
    ctx.artifacts.update(plan.artifacts)
    ctx.plans.append(plan)


def apply_plans(cfg: Any, ctx: Any) -> list[Plan]:
    """Plan every family switched on in ``cfg`` and install the plans on ``ctx``."""
    from jaxcomp.experiment import families

    for name, fam in families.active(cfg).items():
        plan = plan_of(name, fam, cfg[name], ctx)
        if plan.static is None:
            keys = [k[len(name) + 1:] if k.startswith(name + ".") else k
                    for k in getattr(fam, "VECTOR_KEYS", ())]
            plan = dataclasses.replace(plan, static=static_part(cfg[name], keys))
        apply_plan(ctx, plan)
    return ctx.plans


def after_training(ctx: Any) -> None:
    """Run every installed plan's post-training step, in family order."""
    for plan in ctx.plans:
        if plan.after_train is not None:
            plan.after_train(ctx)


__all__ = ["Plan", "after_training", "apply_plan", "apply_plans", "plan_of", "static_part"]
