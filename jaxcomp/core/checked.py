"""Checked mode: range checks on values traced under ``jit`` (sparsity, bits, temperature).

jaxcomp checks every concrete number at the entry point. A number that is *traced*
(a sparsity read from the state inside a jitted step, a ``vmap``-ed sweep of bit
widths, a temperature from a ``loss_state``) cannot be checked in Python. For those,
the library plants ``jax.experimental.checkify.debug_check`` assertions, but only while
:func:`checked` runs the function: a planted check is an effect, and a jitted function
with one leaves JAX's fast C++ dispatch path (about 0.1 ms more per call), so an
ordinary run traces none. The switch is a ``jax.make_user_context``, part of every
``jit`` cache key, so a function jitted and run before is traced again, with its
checks, under :func:`checked`. A failed check raises :class:`CheckedValueError` (a
:class:`ConfigError`) naming the parameter, the value and the allowed range.

Covered today: the pruner's sparsity target (per update step) and its weights
(finite), weight/fake-quant ``bits``, ``temperature``/``alpha`` of the
distillation losses (every ``check_range`` on a traced value), and that a pruning
run's train state holds its pruned weights at zero (its forward pass relies on it).

Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxcomp as jc
    >>> from jaxcomp.distill import kd_loss
    >>> z = jnp.zeros((2, 3)); y = jnp.array([0, 1])
    >>> loss = jc.core.checked(jax.jit(kd_loss))
    >>> round(float(loss(z, z, y, 2.0, 0.5)), 4)
    0.5493
    >>> try:
    ...     loss(z, z, y, jnp.float32(-1.0), 0.5)
    ... except jc.ConfigError as e:
    ...     print(e)
    distill.temperature: got -1.0; allowed range (0, inf) (checked mode)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax

from jaxcomp.core.errors import ConfigError, _is_tracer

# True while `checked` runs a function: only then are checks planted. A jit cache key.
_PLANTING = jax.make_user_context(default_value=False)


def _plant(value: Any) -> bool:
    """Whether to plant a check on ``value``: a tracer, under :func:`checked`."""
    return bool(_PLANTING.value) and _is_tracer(value)


class CheckedValueError(ConfigError):
    """A traced value out of its allowed range, found by :func:`checked`."""


def _interval(lo, hi, lo_open, hi_open) -> str:
    lo_s = "-inf" if lo is None else f"{lo:g}"
    hi_s = "inf" if hi is None else f"{hi:g}"
    left = "(" if lo_open or lo is None else "["
    right = ")" if hi_open or hi is None else "]"
    return f"{left}{lo_s}, {hi_s}{right}"


def _escape(s: str) -> str:
    return s.replace("{", "{{").replace("}", "}}")


def check_traced_range(what: str, value: Any, lo: float | None = None,
                       hi: float | None = None, *, lo_open: bool = False,
                       hi_open: bool = False) -> Any:
    """Plant a checked-mode assertion ``lo <= value <= hi`` (and finite) on a traced value.

    Concrete values are left alone (the entry points check them eagerly), and nothing
    is planted unless :func:`checked` is running the function.
    """
    if not _plant(value):
        return value
    import jax.numpy as jnp
    from jax.experimental import checkify

    v = jnp.asarray(value, jnp.float32)
    ok = jnp.isfinite(v)
    if lo is not None:
        ok &= (v > lo) if lo_open else (v >= lo)
    if hi is not None:
        ok &= (v < hi) if hi_open else (v <= hi)
    bad = jnp.where(ok, jnp.zeros_like(v), v)  # the first offending value, for the message
    first = jnp.ravel(bad)[jnp.argmin(jnp.ravel(ok))] if v.ndim else v
    checkify.debug_check(jnp.all(ok), _escape(what) + ": got {}; allowed range "
                         + _interval(lo, hi, lo_open, hi_open) + " (checked mode)", first)
    return value


def check_traced_choice(what: str, value: Any, allowed: Sequence[float]) -> Any:
    """Plant a checked-mode assertion that every element of a traced ``value`` is in ``allowed``."""
    if not _plant(value):
        return value
    import jax.numpy as jnp
    from jax.experimental import checkify

    v = jnp.asarray(value, jnp.float32)
    ok = jnp.isin(v, jnp.asarray(list(allowed), jnp.float32))
    first = jnp.ravel(v)[jnp.argmin(jnp.ravel(ok))] if v.ndim else v
    checkify.debug_check(jnp.all(ok), _escape(what) + ": got {}; allowed: "
                         + _escape(str(tuple(allowed))) + " (checked mode)", first)
    return value


def check_traced_finite(what: str, x: Any) -> Any:
    """Plant a checked-mode assertion that a traced array holds no NaN/inf."""
    if not _plant(x):
        return x
    import jax.numpy as jnp
    from jax.experimental import checkify

    if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
        return x
    bad = jnp.sum(~jnp.isfinite(x))
    checkify.debug_check(bad == 0, _escape(what) + ": {} NaN/inf value(s); expected finite "
                         "values (checked mode)", bad)
    return x


def check_traced_zero(what: str, x: Any, keep: Any = None) -> Any:
    """Plant a checked-mode assertion that a traced array is zero wherever ``keep`` is
    False (everywhere without ``keep``); ``what`` names the invariant in words."""
    if not _plant(x):
        return x
    import jax.numpy as jnp
    from jax.experimental import checkify

    bad = jnp.sum((x != 0) if keep is None else (x != 0) & ~keep)
    checkify.debug_check(bad == 0, _escape(what) + ": {} non-zero value(s) (checked mode)", bad)
    return x


def checked(fn: Callable[..., Any], *, jit: bool = False,
            static_argnames: Sequence[str] = ()) -> Callable[..., Any]:
    """``fn`` with jaxcomp's traced-value checks turned on.

    Wraps ``fn`` in ``jax.experimental.checkify.checkify`` (user checks only), runs it
    and raises :class:`CheckedValueError` if a check failed. ``fn`` may itself be
    jitted; ``jit=True`` also jits the checkified function (built once).

    Args:
      fn: any function that calls jaxcomp transforms or losses.
      jit: jit the checkified function.
      static_argnames: passed to ``jax.jit`` when ``jit`` is true.

    Returns:
      A function with ``fn``'s signature and outputs.
    """
    from jax.experimental import checkify

    cf = checkify.checkify(fn, errors=checkify.user_checks)
    if jit:
        cf = jax.jit(cf, static_argnames=tuple(static_argnames))

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with _PLANTING(True):
            err, out = cf(*args, **kwargs)
        msg = err.get()
        if msg is not None:
            first = msg.splitlines()[0].strip()
            for tail in (" (check failed at", " (`check` failed)"):
                first = first.split(tail)[0]
            raise CheckedValueError(first)
        return out

    return run
