"""Drop-in quantized modules: the user's own fp32 training step runs unchanged.

:func:`quantize_module` takes a linen or NNX module and returns one whose
layers (those owning a ``kernel``: Dense/Linear, Conv, ...) matched by
``rules`` fake-quantize their kernel (per output channel, symmetric, clipped
straight-through gradient: as :func:`~jaxcomp.quant.weight_quant`) and their
input (per tensor, asymmetric, a moving average of each batch's min/max: as
:func:`~jaxcomp.quant.act_quant`). The numbers equal the functional path's
(``act_quant`` + ``weight_quant``) for the same ranges.

* **linen**: a new module of a subclass of the original's class, with the same
  fields, ``__call__`` signature and params tree. The activation ranges live in
  the ``"quant_stats"`` collection (``{layer: {"lo", "hi", "count"}}``), created
  by ``init``; they are updated when the collection is mutable
  (``apply(v, x, mutable=["quant_stats"])``, as ``batch_stats``) and frozen
  otherwise.
* **NNX**: the module is changed **in place** (and returned): each matched layer
  gets ``act_lo``/``act_hi``/``act_count`` :class:`QuantStat` variables (not
  :class:`flax.nnx.Param`, so an ``nnx.Optimizer(..., wrt=nnx.Param)`` leaves them
  alone) and a ``use_running_average`` flag that ``model.train()`` /
  ``model.eval()`` set: ranges update in train mode and are frozen in eval mode.
  Paths and params are unchanged.

``rules`` are ordered regexes over layer paths (``Dense_0``, ``block/Conv_1``;
NNX: ``layers/0``), first full match wins: ``"pattern"`` (default bits),
``"!pattern"`` (excluded), ``(pattern, bits)`` (weights and inputs at ``bits``)
or ``(pattern, (weight_bits, act_bits))`` (``None`` skips one). A rule that
matches no layer is a :class:`~jaxcomp.core.ConfigError` naming the nearest paths.

Example (NNX, in place):
    >>> import jax, jax.numpy as jnp
    >>> from flax import nnx
    >>> from jaxcomp.quant.dropin import QuantStat, quantize_module
    >>> from jaxcomp.models import NNXMLP
    >>> model = quantize_module(NNXMLP(4, (8,), 2, rngs=nnx.Rngs(0)), ["layers/.*"])
    >>> y = model(jnp.linspace(-1.0, 1.0, 8).reshape(2, 4))          # train mode: observes
    >>> float(model.layers[0].act_lo[...]), int(model.layers[0].act_count[...])
    (-1.0, 1)
    >>> model.eval(); y = model(3 * jnp.ones((2, 4)))                   # eval: frozen
    >>> int(model.layers[0].act_count[...]), len(jax.tree.leaves(nnx.state(model, QuantStat)))
    (1, 6)
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from jaxcomp.core.errors import ConfigError, check_bool, check_number, nearest
from jaxcomp.core.select import _normalize_rules
from jaxcomp.quant.observers import ema
from jaxcomp.quant.transform import quantize_leaf
from jaxcomp.quant.uniform import check_bits, minmax, qparams, ste_fake_quant

COLLECTION = "quant_stats"


class QuantStat(nnx.Variable):
    """An activation-range statistic of a drop-in quantized NNX layer (not trained)."""


@dataclasses.dataclass(frozen=True)
class QuantConfig:
    """The static settings shared by every quantized layer of one model."""

    per_channel: bool = True
    weight_symmetric: bool = True
    act_symmetric: bool = False
    act_signed: bool = True
    momentum: float = 0.9


class _Rules:
    """Ordered ``(regex, (weight_bits, act_bits))`` rules over layer paths."""

    def __init__(self, rules: str | Sequence[Any], weight_bits: Any, act_bits: Any):
        self.rules = []
        for pattern, v in _normalize_rules(rules, "quantize_module rules"):
            if v is False:
                bits = (None, None)
            elif v is True:
                bits = (weight_bits, act_bits)
            elif isinstance(v, tuple | list) and len(v) == 2:
                bits = tuple(v)
            else:
                bits = (v, v)
            for name, b in zip(("weight bits", "act bits"), bits, strict=True):
                if b is not None:
                    check_bits(b, f"quantize_module rule {pattern!r} {name}")
            self.rules.append((re.compile(pattern), pattern, bits))
        self.used: set[str] = set()

    def bits(self, path: str) -> tuple[Any, Any]:
        for rx, pattern, bits in self.rules:
            if rx.fullmatch(path):
                self.used.add(pattern)
                return bits
        return (None, None)

    def check(self, layers: Sequence[str]) -> None:
        for _, pattern, _ in self.rules:
            if pattern not in self.used:
                raise ConfigError(f"quantize_module rules: rule {pattern!r} matches no layer "
                                  f"with a kernel; nearest layer paths: "
                                  f"{nearest(pattern, layers, n=5)}")


# --------------------------------------------------------------------------- numerics
def fake_quant_input(x: jax.Array, lo: jax.Array, hi: jax.Array, count: jax.Array, bits: Any,
                     *, update: bool, cfg: QuantConfig) -> tuple[jax.Array, tuple]:
    """Fake-quantize a layer input with running ranges; returns ``(xq, (lo, hi, count))``.

    ``update``: fold this batch's min/max into the moving average (training);
    otherwise the stored range is used (the batch's own until one was observed).
    """
    lo_hi = minmax(jax.lax.stop_gradient(x).astype(jnp.float32))  # one pass over x
    blo, bhi = (v.reshape(()) for v in lo_hi)
    if update:
        lo, hi = ema((lo, hi), (blo, bhi), count, cfg.momentum)
        count = count + 1
        qlo, qhi = lo, hi
    else:
        seen = count > 0
        qlo, qhi = jnp.where(seen, lo, blo), jnp.where(seen, hi, bhi)
    s, z = qparams(qlo, qhi, bits, symmetric=cfg.act_symmetric, signed=cfg.act_signed)
    xq = ste_fake_quant(x, s, z, bits, symmetric=cfg.act_symmetric, signed=cfg.act_signed)
    return xq, (lo, hi, count)


def fake_quant_kernel(path: str, w: jax.Array, bits: Any, cfg: QuantConfig) -> jax.Array:
    """A kernel fake-quantized as :func:`~jaxcomp.quant.weight_quant` does (output axis -1)."""
    return quantize_leaf(path, w, bits, per_channel=cfg.per_channel, axis=-1, group_size=None,
                         group_axis=-2, symmetric=cfg.weight_symmetric, observer="minmax")


def _zeros() -> dict[str, jax.Array]:
    return {"lo": jnp.zeros((), jnp.float32), "hi": jnp.zeros((), jnp.float32),
            "count": jnp.zeros((), jnp.int32)}


# --------------------------------------------------------------------------- linen
def _linen_path(module: nn.Module, root: tuple) -> str:
    """``module``'s path below the quantized module's (``""`` outside it or at it)."""
    path = tuple(module.path)
    if len(path) <= len(root) or path[:len(root)] != root:
        return ""
    return "/".join(str(p) for p in path[len(root):])


def _quantize_linen(module: nn.Module, rules: _Rules, cfg: QuantConfig) -> nn.Module:
    cls = type(module)

    def run(self, args, kwargs):
        layers: dict[str, tuple] = {}  # path -> bits, for the layers seen with a kernel
        root = tuple(self.path)
        initializing = self.is_initializing()

        def hook(next_fun, a, kw, ctx):
            m = ctx.module
            path = _linen_path(m, root) if ctx.method_name == "__call__" else ""
            if not path:
                return next_fun(*a, **kw)
            if m.is_initializing():  # float forward (as act_quant's init); create the stats
                out = next_fun(*a, **kw)
                if m.has_variable("params", "kernel"):
                    layers[path] = rules.bits(path)
                    if layers[path][1] is not None:
                        for k, v in _zeros().items():
                            m.variable(COLLECTION, k, lambda v=v: v)
                return out
            if not m.has_variable("params", "kernel"):
                return next_fun(*a, **kw)
            layers[path] = wb_ab = rules.bits(path)
            if wb_ab[1] is None:
                return next_fun(*a, **kw)
            if not m.has_variable(COLLECTION, "lo"):
                raise ConfigError(f"quantize_module: layer {path!r} has no {COLLECTION!r} "
                                  f"variables; initialize the quantized module (its init "
                                  f"creates them) and pass them: apply({{'params': ..., "
                                  f"{COLLECTION!r}: ...}}, x)")
            st = {k: m.get_variable(COLLECTION, k) for k in ("lo", "hi", "count")}
            update = m.is_mutable_collection(COLLECTION)
            xq, (lo, hi, count) = fake_quant_input(a[0], st["lo"], st["hi"], st["count"],
                                                   wb_ab[1], update=update, cfg=cfg)
            if update:
                for k, v in (("lo", lo), ("hi", hi), ("count", count)):
                    m.put_variable(COLLECTION, k, v)
            return next_fun(xq, *a[1:], **kw)

        def quant_params(variables):
            if initializing:  # init returns the float params (the forward is float too)
                return variables
            def leaf(kp, w):
                path = "/".join(str(getattr(k, "key", k)) for k in kp)
                layer, _, name = path.rpartition("/")
                bits = rules.bits(layer)[0] if name == "kernel" and layer else None
                if bits is None or getattr(w, "ndim", 0) < 2:
                    return w
                return fake_quant_kernel(path, w, bits, cfg)
            return {c: jax.tree_util.tree_map_with_path(leaf, v) if c == "params" else v
                    for c, v in variables.items()}

        def body(mdl, *a, **kw):
            with nn.intercept_methods(hook):
                return cls.__call__(mdl, *a, **kw)

        mapped = nn.map_variables(body, "params", quant_params, init=initializing)
        rules.used.clear()
        out = mapped(self, *args, **kwargs)
        rules.check(sorted(layers))
        return out

    @functools.wraps(cls.__call__)
    def __call__(self, *args, **kwargs):
        return run(self, args, kwargs)

    # the same class name: a parent's auto-naming (``MLP_0``) and so its params are unchanged
    sub = type(cls.__name__, (cls,), {"__call__": __call__, "__module__": cls.__module__,
                                      "__qualname__": f"quantized {cls.__qualname__}"})
    kw = {f.name: getattr(module, f.name) for f in dataclasses.fields(module)
          if f.init and f.name not in ("parent", "name")}
    return sub(**kw)


# --------------------------------------------------------------------------- NNX
@functools.cache
def _nnx_class(cls: type) -> type:
    """A subclass of an NNX layer class whose ``__call__`` fake-quantizes (cached: one
    class per layer class, so graph definitions compare equal across splits)."""

    def __call__(self, x, *args, **kwargs):
        wb, ab = self.quant_bits
        cfg = self.quant_config
        if ab is not None:
            x, (lo, hi, count) = fake_quant_input(
                x, self.act_lo[...], self.act_hi[...], self.act_count[...], ab,
                update=not self.use_running_average, cfg=cfg)
            if not self.use_running_average:
                self.act_lo[...], self.act_hi[...], self.act_count[...] = lo, hi, count
        if wb is None:
            return cls.__call__(self, x, *args, **kwargs)
        w = self.kernel[...]
        self.kernel[...] = fake_quant_kernel(self.quant_path + "/kernel", w, wb, cfg)
        try:
            return cls.__call__(self, x, *args, **kwargs)
        finally:
            self.kernel[...] = w

    return type(f"Quantized{cls.__name__}", (cls,), {"__call__": __call__,
                                                     "__module__": cls.__module__})


def _quantize_nnx(model: nnx.Module, rules: _Rules, cfg: QuantConfig) -> nnx.Module:
    layers = [("/".join(str(p) for p in path), m) for path, m in nnx.iter_modules(model)
              if isinstance(getattr(m, "kernel", None), nnx.Param)]
    chosen = []
    for path, m in layers:
        wb, ab = rules.bits(path)
        if wb is not None or ab is not None:
            if hasattr(m, "quant_bits"):
                raise ConfigError(f"quantize_module: layer {path!r} is already quantized")
            chosen.append((path, m, (wb, ab)))
    rules.check([p for p, _ in layers])
    for path, m, bits in chosen:
        object.__setattr__(m, "__class__", _nnx_class(type(m)))
        m.quant_bits, m.quant_config, m.quant_path = bits, cfg, path
        m.use_running_average = False
        if bits[1] is not None:
            z = _zeros()
            m.act_lo, m.act_hi, m.act_count = (QuantStat(z[k]) for k in ("lo", "hi", "count"))
    return model


# --------------------------------------------------------------------------- public
def quantize_module(module: Any, rules: str | Sequence[Any] = ".*", *, weight_bits: Any = 8,
                    act_bits: Any = 8, per_channel: bool = True,
                    weight_symmetric: bool = True, act_symmetric: bool = False,
                    act_signed: bool = True, momentum: float = 0.9) -> Any:
    """Quantize a linen or NNX module's layers as a drop-in replacement.

    Args:
      module: a ``flax.linen.Module`` (a new module is returned) or an
        ``nnx.Module`` (changed in place and returned).
      rules: layer-path rules (see the module docstring); default: every layer
        with a kernel.
      weight_bits, act_bits: the default bit widths (2–8 or 16; ``None``: off).
      per_channel: one weight range per output channel (else per tensor).
      weight_symmetric: symmetric weight ranges (zero point 0).
      act_symmetric, act_signed: the activation grid (default asymmetric, signed).
      momentum: the moving average's weight on the old range (0 ≤ m ≤ 1).

    Returns:
      The quantized module.

    Raises:
      ConfigError: bad bits or momentum, a rule that matches no layer, a module
        that is neither linen nor NNX, or an NNX layer quantized twice.

    Example (linen):
        >>> import jax, jax.numpy as jnp
        >>> from jaxcomp.models import MLP
        >>> q = quantize_module(MLP((8,), 2), ["Dense_.*"])
        >>> v = q.init(jax.random.key(0), jnp.ones((1, 4)))
        >>> sorted(v["quant_stats"]["Dense_0"])
        ['count', 'hi', 'lo']
        >>> y, upd = q.apply(v, -jnp.ones((2, 4)), mutable=["quant_stats"])
        >>> float(upd["quant_stats"]["Dense_0"]["lo"]), y.shape
        (-1.0, (2, 2))
    """
    for name, b in (("weight_bits", weight_bits), ("act_bits", act_bits)):
        if b is not None:
            check_bits(b, name)
    for name, v in (("per_channel", per_channel), ("weight_symmetric", weight_symmetric),
                    ("act_symmetric", act_symmetric), ("act_signed", act_signed)):
        check_bool(name, v)
    check_number("momentum", momentum, 0.0, 1.0)
    cfg = QuantConfig(per_channel, weight_symmetric, act_symmetric, act_signed, float(momentum))
    r = _Rules(rules, weight_bits, act_bits)
    if isinstance(module, nn.Module):
        return _quantize_linen(module, r, cfg)
    if isinstance(module, nnx.Module):
        return _quantize_nnx(module, r, cfg)
    raise ConfigError(f"quantize_module: module got {type(module).__name__}; expected a "
                      "flax.linen.Module or an nnx.Module")
