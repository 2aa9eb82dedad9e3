"""Schedules: pure functions of a (traced) step, whose numbers are pytree leaves.

Every schedule is a small frozen dataclass registered as a pytree, so its
numbers (initial and final values, begin and end steps) can live in a
transform's state as arrays: a sweep over targets compiles once and can be
``jax.vmap``-ed. Call it with a step to get the value: ``sched(step)``.

Example:
    >>> from jaxcomp.core import schedules
    >>> s = schedules.polynomial(0.0, 0.9, begin=0, end=100, power=3)
    >>> round(float(s(0)), 3), round(float(s(50)), 4), round(float(s(100)), 3)
    (0.0, 0.7875, 0.9)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

Numeric = Any


def _schedule(cls):
    """A frozen dataclass whose fields are all pytree leaves.

    Unflattening builds the object without ``__init__``, so its checks (``__post_init__``)
    run when a user makes a schedule, never when JAX rebuilds one from arrays: that
    happens after every jitted step whose state holds a schedule, and a check there
    would read the step's outputs back to the host and wait for them.
    """
    cls = dataclasses.dataclass(frozen=True)(cls)
    names = tuple(f.name for f in dataclasses.fields(cls))

    def flatten_with_keys(s):
        return [(jax.tree_util.GetAttrKey(n), getattr(s, n)) for n in names], None

    def unflatten(_, leaves):
        obj = object.__new__(cls)
        for n, v in zip(names, leaves, strict=True):
            object.__setattr__(obj, n, v)
        return obj

    jax.tree_util.register_pytree_with_keys(
        cls, flatten_with_keys, unflatten,
        flatten_func=lambda s: ([getattr(s, n) for n in names], None))
    return cls


def _progress(step, begin, end):
    step = jnp.asarray(step, jnp.float32)
    begin = jnp.asarray(begin, jnp.float32)
    span = jnp.maximum(jnp.asarray(end, jnp.float32) - begin, 1.0)
    return jnp.clip((step - begin) / span, 0.0, 1.0)


@_schedule
class Constant:
    """``value`` at every step."""

    value: Numeric

    def __call__(self, step):
        del step
        return jnp.asarray(self.value, jnp.float32)


@_schedule
class OneShot:
    """``before`` until ``at``, then ``value`` (prune once, at step ``at``)."""

    value: Numeric
    at: Numeric = 0
    before: Numeric = 0.0

    def __call__(self, step):
        return jnp.where(
            jnp.asarray(step) >= self.at,
            jnp.asarray(self.value, jnp.float32),
            jnp.asarray(self.before, jnp.float32),
        )


@_schedule
class Polynomial:
    """Zhu & Gupta (2017): ``f + (i - f) * (1 - (t - t0) / (n Δt)) ** power``.

    ``frequency`` (Δt) makes the value change only every Δt steps after ``begin``.
    """

    init: Numeric
    final: Numeric
    begin: Numeric = 0
    end: Numeric = 1
    power: Numeric = 3.0
    frequency: Numeric = 1

    def __post_init__(self):
        _check_span(self.begin, self.end, "schedules.Polynomial")

    def __call__(self, step):
        step = jnp.asarray(step, jnp.float32)
        freq = jnp.maximum(jnp.asarray(self.frequency, jnp.float32), 1.0)
        begin = jnp.asarray(self.begin, jnp.float32)
        stepped = begin + jnp.floor(jnp.maximum(step - begin, 0.0) / freq) * freq
        p = _progress(stepped, begin, self.end)
        i = jnp.asarray(self.init, jnp.float32)
        f = jnp.asarray(self.final, jnp.float32)
        return f + (i - f) * (1.0 - p) ** jnp.asarray(self.power, jnp.float32)


@_schedule
class Cosine:
    """Cosine interpolation from ``init`` to ``final`` over ``[begin, end]``."""

    init: Numeric
    final: Numeric
    begin: Numeric = 0
    end: Numeric = 1

    def __post_init__(self):
        _check_span(self.begin, self.end, "schedules.Cosine")

    def __call__(self, step):
        p = _progress(step, self.begin, self.end)
        i = jnp.asarray(self.init, jnp.float32)
        f = jnp.asarray(self.final, jnp.float32)
        return f + (i - f) * 0.5 * (1.0 + jnp.cos(jnp.pi * p))


def _check_span(begin: Numeric, end: Numeric, what: str) -> None:
    """``end`` must not come before ``begin`` (checked when both are concrete numbers)."""
    import numpy as np

    from jaxcomp.core.errors import ConfigError

    try:
        b, e = float(np.asarray(begin)), float(np.asarray(end))
    except Exception:  # traced, batched or a pytree placeholder: checked where made
        return
    if e < b:
        raise ConfigError(f"{what}: end={e:g} comes before begin={b:g}; need end >= begin")


def _check_values(what: str, **values: Numeric) -> None:
    """Finite numbers for the schedule's values (traced values pass)."""
    from jaxcomp.core.errors import check_number

    for name, v in values.items():
        check_number(f"{what}: {name}", v)


def _check_steps(what: str, **steps: Numeric) -> None:
    """Whole step numbers (traced values pass). Negative ones are allowed: a gate at
    ``begin=end=-1`` never opens (fixed masks)."""
    from jaxcomp.core.errors import check_number

    for name, v in steps.items():
        check_number(f"{what}: {name}", v, integer=True)


def _check_number_frequency(what: str, frequency: Numeric) -> None:
    from jaxcomp.core.errors import check_number

    check_number(f"{what}: frequency", frequency, 1, None, integer=True)


def _check_power(what: str, power: Numeric) -> None:
    from jaxcomp.core.errors import check_number

    check_number(f"{what}: power", power, 0.0, None, lo_open=True)


def gate(begin: Numeric, end: Numeric, every: Numeric = 1) -> dict[str, jax.Array]:
    """When an update happens: steps ``begin, begin + every, …`` up to ``end``, as int32
    arrays (state, so a sweep over them shares one program). Read with :func:`gate_open`.

    Example:
        >>> g = gate(2, 8, 3)
        >>> [int(s) for s in range(10) if gate_open(g, s)]
        [2, 5, 8]
    """
    from jaxcomp.core.errors import check_number

    _check_steps("gate", begin=begin, end=end)
    check_number("gate every", every, 1, None, integer=True)  # traced: clamped below
    _check_span(begin, end, "gate")
    return {"begin": jnp.asarray(begin, jnp.int32), "end": jnp.asarray(end, jnp.int32),
            "every": jnp.maximum(jnp.asarray(every, jnp.int32), 1)}


def gate_open(g: dict[str, jax.Array], step: Numeric) -> jax.Array:
    """Whether ``step`` is an update step of gate ``g`` (see :func:`gate`); jit-safe."""
    return (step >= g["begin"]) & (step <= g["end"]) & \
        (jnp.mod(step - g["begin"], g["every"]) == 0)


def constant(value: Numeric) -> Constant:
    """A constant schedule."""
    _check_values("schedules.constant", value=value)
    return Constant(value)


def one_shot(value: Numeric, at: Numeric = 0, before: Numeric = 0.0) -> OneShot:
    """``before`` until step ``at``, then ``value``."""
    _check_values("schedules.one_shot", value=value, before=before)
    _check_steps("schedules.one_shot", at=at)
    return OneShot(value, at, before)


def linear(init: Numeric, final: Numeric, begin: Numeric = 0, end: Numeric = 1) -> Polynomial:
    """Linear interpolation from ``init`` to ``final`` over ``[begin, end]``."""
    _check_values("schedules.linear", init=init, final=final)
    _check_steps("schedules.linear", begin=begin, end=end)
    _check_span(begin, end, "schedules.linear")
    return Polynomial(init, final, begin, end, 1.0, 1)


def polynomial(
    init: Numeric,
    final: Numeric,
    begin: Numeric = 0,
    end: Numeric = 1,
    power: Numeric = 3.0,
    frequency: Numeric = 1,
) -> Polynomial:
    """Polynomial decay; ``power=3`` is Zhu & Gupta's gradual-pruning schedule."""
    _check_values("schedules.polynomial", init=init, final=final)
    _check_steps("schedules.polynomial", begin=begin, end=end)
    _check_power("schedules.polynomial", power)
    _check_number_frequency("schedules.polynomial", frequency)
    _check_span(begin, end, "schedules.polynomial")
    return Polynomial(init, final, begin, end, power, frequency)


def cubic(init: Numeric, final: Numeric, begin: Numeric = 0, end: Numeric = 1,
          frequency: Numeric = 1) -> Polynomial:
    """Zhu & Gupta's cubic schedule (``polynomial`` with ``power=3``)."""
    _check_values("schedules.cubic", init=init, final=final)
    _check_steps("schedules.cubic", begin=begin, end=end)
    _check_number_frequency("schedules.cubic", frequency)
    _check_span(begin, end, "schedules.cubic")
    return Polynomial(init, final, begin, end, 3.0, frequency)


def cosine(init: Numeric, final: Numeric, begin: Numeric = 0, end: Numeric = 1) -> Cosine:
    """Cosine interpolation from ``init`` to ``final``."""
    _check_values("schedules.cosine", init=init, final=final)
    _check_steps("schedules.cosine", begin=begin, end=end)
    _check_span(begin, end, "schedules.cosine")
    return Cosine(init, final, begin, end)


Schedule = Constant | OneShot | Polynomial | Cosine


def as_schedule(x: Numeric | Schedule) -> Schedule:
    """Wrap a plain number as a constant schedule; pass schedules through."""
    if isinstance(x, Constant | OneShot | Polynomial | Cosine):
        return x
    return constant(x)


def to_arrays(s: Schedule) -> Schedule:
    """The same schedule with every number as a new float32 array (for state: a train
    step donates its state, so a state must not share buffers with the schedule given)."""
    return jax.tree.map(lambda v: jnp.array(v, jnp.float32), s)
