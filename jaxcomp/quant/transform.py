"""Weight fake-quantization as a jaxcomp :class:`~jaxcomp.core.Transform` (QAT and PTQ).

``weight_quant(bits=8, per_channel=True)`` fake-quantizes the selected
kernels in ``apply`` with a clipped straight-through gradient, so
``jaxcomp.train.fit(transform=weight_quant(...))`` is quantization-aware
training. The state holds each leaf's bit width **as an array**
(``state["bits"][path]``): a sweep over bits compiles once and ``jax.vmap``
runs over it. Ranges come from the current weights through an observer
(``minmax`` or the MSE-optimal clipping search ``mse``).

``bits`` may be an int or ordered ``(pattern, bits)`` rules over param paths
(first full match wins), e.g. ``[("Dense_0/kernel", 8), (".*/kernel", 4)]``.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp.quant.transform import weight_quant
    >>> params = {"Dense_0": {"kernel": jnp.linspace(-1, 1, 12).reshape(4, 3),
    ...                       "bias": jnp.ones(3)}}
    >>> t = weight_quant(bits=2)
    >>> state = t.init(params)
    >>> state["bits"]
    {'Dense_0/kernel': Array(2., dtype=float32)}
    >>> sorted(set(t.apply(params, state)["Dense_0"]["kernel"][:, 0].tolist()))
    [-1.0, 0.0, 1.0]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxcomp.core import guards
from jaxcomp.core import paths as _paths
from jaxcomp.core.errors import ConfigError, check_bool, check_choice, check_number
from jaxcomp.core.select import Where, resolve_rules, select
from jaxcomp.core.transform import Transform
from jaxcomp.quant.uniform import ROUNDINGS, check_bits, check_finite, normalize_axis
from jaxcomp.quant.uniform import fake_quant as _fake_quant

WEIGHT_OBSERVERS = ("minmax", "mse")


def bits_per_path(params: Any, bits: Any, where: Where = None,
                  what: str = "bits") -> dict[str, Any]:
    """``{path: bits}`` for the selected leaves; ``bits`` is a number/array or rules."""
    sel = select(params, where)
    if isinstance(bits, Sequence) and not isinstance(bits, str) and bits and \
            isinstance(bits[0], tuple | list):
        vals = resolve_rules(params, [tuple(r) for r in bits], default=None, what=what)
        out = {}
        for p, s in sel.items():
            if s and vals[p] is not None:
                out[p] = check_bits(vals[p], f"{what}[{p}]")
        if not out:
            raise ConfigError(f"{what}: rules {bits!r} give no selected parameter a bit width")
        return out
    check_bits(bits, what)
    return {p: bits for p, s in sel.items() if s}


def quantize_leaf(path: str, x: jax.Array, bits: Any, *, per_channel: bool, axis: int,
                  group_size: int | None, group_axis: int, symmetric: bool,
                  observer: str, rounding: str = "nearest",
                  key: jax.Array | None = None) -> jax.Array:
    """Fake-quantize one weight with this module's conventions."""
    ax = normalize_axis(axis, x.ndim, f"axis (for {path} of shape {x.shape})") \
        if per_channel else None
    if observer == "mse":
        from jaxcomp.quant.observers import mse_range
        from jaxcomp.quant.uniform import qparams, ste_fake_quant

        if group_size is not None:
            raise ConfigError("observer='mse' does not support group_size; use 'minmax'")
        lo, hi = mse_range(jax.lax.stop_gradient(x), bits, axis=ax, symmetric=symmetric)
        s, z = qparams(lo, hi, bits, symmetric=symmetric)
        return ste_fake_quant(x, s, z, bits, symmetric=symmetric, rounding=rounding, key=key)
    return _fake_quant(x, bits, axis=ax, group_size=group_size, group_axis=group_axis,
                       symmetric=symmetric, rounding=rounding, key=key)


def weight_quant(bits: Any = 8, *, where: Where = None, per_channel: bool = True,
                 axis: int = -1, group_size: int | None = None, group_axis: int = -2,
                 symmetric: bool = True, observer: str = "minmax",
                 rounding: str = "nearest", key: jax.Array | None = None) -> Transform:
    """Fake-quantize the selected weights (kernels by default) in the forward pass.

    Args:
      bits: 2–8 or 16 (int or traced array), or ``(pattern, bits)`` rules.
      where: which leaves (default: floating leaves with ``ndim >= 2``).
      per_channel: one range per output channel (``axis``) instead of per tensor.
      axis: the channel axis (``-1``: a Dense/Conv kernel's output features).
      group_size: per-group blocks of this size along ``group_axis`` (the input
        features, ``-2``), combined with per-channel.
      symmetric: zero point 0 (else an integer zero point; 0.0 stays exact).
      observer: ``"minmax"`` or ``"mse"`` (clipping search).
      rounding: ``"nearest"`` or ``"stochastic"`` (then ``key`` is required; it
        is kept in the state and replaced by ``update(key=...)``).
      key: the initial PRNG key for stochastic rounding.

    Returns:
      A :class:`Transform`; state ``{"bits": {path: f32 array}}`` (plus ``"key"``).
    """
    check_choice("observer", observer, WEIGHT_OBSERVERS)
    check_bool("per_channel", per_channel)
    check_bool("symmetric", symmetric)
    if group_size is not None:
        check_number("group_size", group_size, 1, None, integer=True)
    check_choice("rounding", rounding, ROUNDINGS)
    stochastic = rounding == "stochastic"
    if stochastic and key is None:
        raise ConfigError("rounding='stochastic' needs an explicit key=")

    seen: dict[str, set[tuple[int, ...]]] = {}  # the shapes each path had at init

    def init(params):
        guards.require_leaves("weight_quant: no leaf selected", params)
        per = bits_per_path(params, bits, where)
        flat = _paths.path_dict(params)
        if not per:
            raise ConfigError(f"weight_quant: no leaf selected (where={where!r}) among "
                              f"{len(flat)} leaves; nothing would be quantized")
        for p in per:
            x = flat[p]
            if not jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating):
                raise ConfigError(f"weight_quant: {p} has dtype {jnp.asarray(x).dtype}; only "
                                  f"floating-point weights can be fake-quantized (select "
                                  f"them with where=)")
            check_finite(x, f"weights {p}")
            if per_channel:
                normalize_axis(axis, x.ndim, f"axis (for {p} of shape {x.shape})")
            if group_size is not None:
                ga = normalize_axis(group_axis, x.ndim, f"group_axis (for {p})")[0]
                if group_size < 1 or x.shape[ga] % group_size:
                    raise ConfigError(f"group_size: got {group_size!r}; it must divide {p}'s "
                                      f"axis {ga} of size {x.shape[ga]}")
        for p in per:
            seen.setdefault(p, set()).add(tuple(jnp.shape(flat[p])))
        state = {"bits": {p: jnp.asarray(b, jnp.float32) for p, b in per.items()}}
        if stochastic:
            state["key"] = _key_data(key)
        return state

    def check(what, params, state):
        guards.require_state(what, state, ("bits",) + (("key",) if stochastic else ()),
                             "weight_quant's")
        pd = guards.check_same_leaves(what, params, dict.fromkeys(state["bits"]))
        for p in state["bits"]:
            now = tuple(jnp.shape(pd[p]))
            if p in seen and now not in seen[p]:
                raise ConfigError(f"{what}: {p!r} has shape {now} but had shape "
                                  f"{sorted(seen[p])[0]} at init; the params changed since "
                                  "(surgery, a transpose?): re-run init")

    def apply(params, state):
        check("weight_quant.apply", params, state)
        bits_state = state["bits"]
        keys = {}
        if stochastic:
            base = jax.random.wrap_key_data(state["key"])
            ks = jax.random.split(base, max(len(bits_state), 1))
            keys = {p: ks[i] for i, p in enumerate(sorted(bits_state))}

        def leaf(path, x):
            if path not in bits_state:
                return x
            return quantize_leaf(path, x, bits_state[path], per_channel=per_channel, axis=axis,
                                 group_size=group_size, group_axis=group_axis,
                                 symmetric=symmetric, observer=observer, rounding=rounding,
                                 key=keys.get(path))

        return _paths.map_with_path(leaf, params)

    def update(params, state, *, step, grads=None, key=None):
        check("weight_quant.update", params, state)
        del params, step, grads
        if stochastic and key is not None:
            return {**state, "key": _key_data(key)}
        return state

    return Transform(init, apply, update)


def _key_data(key: jax.Array) -> jax.Array:
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key)
    return jnp.asarray(key, jnp.uint32)


def fake_quant_params(params: Any, bits: Any = 8, **kwargs: Any) -> Any:
    """``weight_quant(bits, **kwargs)`` applied once: fake-quantized params (PTQ, RTN)."""
    t = weight_quant(bits, **kwargs)
    return t.apply(params, t.init(params))
