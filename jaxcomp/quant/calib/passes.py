"""The jitted passes of the block-by-block calibration: tapped-input reductions and
block re-runs, streamed over the calibration batches in chunks of samples.

A pass runs one :class:`~jaxcomp.quant.calib.driver.Block` over a list of batches
``(B, ..., d)``; inside one compiled program per batch, the batch is cut along its
leading (sample) axis into chunks of about ``chunk_tokens`` tokens (a divisor of ``B``
samples) that go through the block one after the other, so the block's temporaries
(attention scores, MLP hiddens) are those of one chunk. **The block must treat the
samples of the leading axis independently** (every transformer block does).

* :func:`reduce_taps` accumulates a reduction (``init(dim)``, ``update(acc, x)``) of
  every tapped linear input, e.g. :func:`~jaxcomp.quant.calib.stats.stats_update`'s
  ``X^T X``. Linears whose tap receives the very same value (``q``/``k``/``v`` after
  one norm, ``up``/``gate``) share one accumulator: it is computed once and returned
  under each name. The tapped names and the sharing are read from one abstract trace
  (no device work), so a name the block never taps is known before anything runs.
* with ``outputs=True`` the pass also returns the block's outputs; with
  ``donate=True`` each output batch is written over its input batch's buffer (only
  for buffers the caller of the pass owns, never a user's arrays).

The compiled programs are cached per block function, tap grouping, reduction and
chunk size: every block of a model and every call of the driver with the same
shapes reuse them.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp.quant.calib.stats import stats_init, stats_update
    >>> def blk(p, x, tap):
    ...     h = x / 2
    ...     return x + tap("a", h) @ p["a"] + tap("b", h) @ p["b"]
    >>> p = {"a": jnp.eye(4), "b": jnp.eye(4)}
    >>> x = [jnp.ones((8, 3, 4))]
    >>> acc, ys = reduce_taps(blk, p, x, ("a", "b"), stats_init, stats_update,
    ...                       outputs=True, chunk_tokens=6)
    >>> acc["a"] is acc["b"], float(acc["a"].count), float(ys[0][0, 0, 0])
    (True, 24.0, 2.0)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxcomp.core.errors import ConfigError

CHUNK_TOKENS = 512
Slots = tuple[tuple[str, ...], ...]
_PROGRAMS: list[Any] = []


def program_count() -> int:
    """How many programs the passes have compiled in this process (all shapes)."""
    return sum(fn._cache_size() for fn in _PROGRAMS)


def no_tap(name: str, x: jax.Array) -> jax.Array:
    """The identity tap."""
    return x


def tap_slots(apply: Callable, params: Any, x: Any, names: Sequence[str]
              ) -> tuple[Slots, dict[str, int]]:
    """The tapped names of ``names`` grouped by the value their taps receive, and each
    tapped name's input width.

    One abstract trace of ``apply(params, x, tap)``: two names share a slot when
    their taps see the same values in the same order. Names never tapped are left
    out (the caller reports them).
    """
    wanted = set(names)
    seen: dict[str, list[int]] = {}
    dims: dict[str, int] = {}
    keep: list[Any] = []                 # the traced values stay alive: ids stay unique

    def tap(name, v):
        if name in wanted:
            keep.append(v)
            seen.setdefault(name, []).append(id(v))
            dims.setdefault(name, int(v.shape[-1]))
        return v

    jax.eval_shape(lambda p, xx: apply(p, xx, tap), params, x)
    slots: dict[tuple[int, ...], list[str]] = {}
    for name in names:
        if name in seen:
            slots.setdefault(tuple(seen[name]), []).append(name)
    return tuple(tuple(s) for s in slots.values()), dims


def chunk_size(shape: Sequence[int], chunk_tokens: int | None) -> int:
    """Samples per chunk: the largest divisor of ``shape[0]`` with at most
    ``chunk_tokens`` tokens (at least 1; the whole batch for ``None``).

    Example:
        >>> chunk_size((16, 256, 64), 1024), chunk_size((6, 100, 8), 250), chunk_size((5, 4), None)
        (4, 2, 5)
    """
    n = int(shape[0])
    if chunk_tokens is None:
        return n
    per = 1
    for s in shape[1:-1]:
        per *= int(s)
    best = 1
    for c in range(1, n + 1):
        if n % c == 0 and c * per <= chunk_tokens:
            best = c
    return best


@functools.lru_cache(maxsize=128)
def _pass_fn(apply: Callable, slots: Slots, update: Callable | None, chunk: int,
             outputs: bool, donate: bool) -> Callable:
    """One jitted program ``(params, x, acc) -> (acc, y or None)`` for a batch."""
    def one(params, xc, acc):
        new = dict(acc)

        def tap(name, v):
            if name in new:
                new[name] = update(new[name], v)
            return v

        y = apply(params, xc, tap)
        return new, y

    def step(params, x, acc):
        n = x.shape[0] // chunk
        if n == 1:
            acc, y = one(params, x, acc)
            return acc, (y if outputs else None)
        first = jax.eval_shape(lambda p, xc: one(p, xc, acc)[1], params, x[:chunk])
        in_place = outputs and first.shape == x[:chunk].shape and first.dtype == x.dtype
        if outputs:
            buf = x if in_place else jnp.zeros((x.shape[0],) + first.shape[1:], first.dtype)
        else:
            buf = None

        def body(j, carry):
            b, a = carry
            src = b if in_place else x
            xc = jax.lax.dynamic_slice_in_dim(src, j * chunk, chunk, 0)
            a, y = one(params, xc, a)
            if outputs:
                b = jax.lax.dynamic_update_slice_in_dim(b, y, j * chunk, 0)
            return b, a

        buf, acc = jax.lax.fori_loop(0, n, body, (buf, acc))
        return acc, buf

    fn = jax.jit(step, donate_argnums=(1, 2) if donate and outputs else (2,))
    _PROGRAMS.append(fn)
    return fn


def reduce_taps(apply: Callable, params: Any, xs: Sequence[jax.Array], names: Sequence[str],
                init: Callable[[int], Any] | None = None,
                update: Callable[[Any, jax.Array], Any] | None = None, *,
                outputs: bool = False, donate: bool = False,
                chunk_tokens: int | None = CHUNK_TOKENS, where: str = "block"
                ) -> tuple[dict[str, Any], list[jax.Array] | None]:
    """Run ``apply`` over the batches ``xs``, reducing every tapped input of ``names``.

    Args:
      apply, params: the block (``apply(params, x, tap) -> y``).
      xs: the input batches (leading axis: samples).
      names: the linears whose tapped inputs are reduced; ``init(dim)`` and
        ``update(acc, x)`` the reduction (a module-level function, so that the
        compiled program is cached), or ``None`` for a plain run.
      outputs: also return the output batches; donate: write them over the input
        batches' buffers (the inputs are then deleted: only for buffers you own).
      chunk_tokens: tokens per chunk inside a batch (``None``: whole batches).
      where: the block's name in error messages.

    Returns:
      ``({name: accumulator}, outputs or None)``; names that share a slot share
      one accumulator object.

    Raises:
      ConfigError: a name in ``names`` is never tapped by ``apply``.
    """
    if not xs:
        raise ConfigError(f"{where}: got no calibration batch; at least one is needed")
    slots: Slots = ()
    dims: dict[str, int] = {}
    if names and update is not None:
        slots, dims = tap_slots(apply, params, xs[0], names)
        got = {n for s in slots for n in s}
        missing = [n for n in names if n not in got]
        if missing:
            raise ConfigError(f"{where}.apply never called tap(name, x) for {missing}; the "
                              "block must tap the input of every listed linear")
    acc = {s[0]: init(dims[s[0]]) for s in slots}
    ys = []
    for xb in xs:
        fn = _pass_fn(apply, slots, update, chunk_size(xb.shape, chunk_tokens), outputs,
                      donate)
        acc, y = fn(params, xb, acc)
        if outputs:
            ys.append(y)
    out = {n: acc[s[0]] for s in slots for n in s}
    return out, (ys if outputs else None)
