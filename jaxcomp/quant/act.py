"""Activation fake-quantization by module-path rules (linen and NNX).

:func:`act_quant` wraps a :class:`~jaxcomp.flax.Model` so that the *inputs*
of the modules matched by ``rules`` (e.g. every ``Dense``/``Conv``) are
fake-quantized in the forward pass, through the interception adapter
(:func:`jaxcomp.flax.intercept`, which sees linen modules and the NNX modules
of a :func:`~jaxcomp.flax.from_nnx` model alike).
Rules are ordered ``pattern`` / ``"!pattern"`` / ``(pattern, bits)`` entries
(first full match wins), so ``[("Dense_0", 8), ("Dense_2", 8), ("Dense_.*", 4)]``
keeps the first and last layers at 8 bits. A rule that matches no module is a
:class:`~jaxcomp.core.ConfigError`.

The ranges live in the model state under ``"act_quant"``:
``{path: {"lo", "hi", "count", "bits"}}`` (arrays, so they checkpoint and vmap).
In training they follow a moving average of each batch's min/max (Jacob et
al. 2018); in evaluation the stored ranges are used (the batch's own range
until a range was observed). :meth:`ActQuant.calibrate` sets them from N
calibration batches with any observer (PTQ).

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp.models import get_model
    >>> from jaxcomp.quant.act import act_quant
    >>> base = get_model("mlp", input_shape=(8,), num_classes=3, features=(16,))
    >>> aq = act_quant(base, ["Dense_.*"], bits=8)
    >>> params, ms = aq.model.init(jax.random.key(0), jnp.ones((1, 8)))
    >>> sorted(ms["act_quant"])
    ['Dense_0', 'Dense_1']
    >>> ms = aq.calibrate(params, ms, [jnp.ones((4, 8)), -jnp.ones((4, 8))])
    >>> ms["act_quant"]["Dense_0"]["lo"].item(), int(ms["act_quant"]["Dense_0"]["count"])
    (-1.0, 2)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxcomp.core.errors import ConfigError, check_choice
from jaxcomp.flax.intercept import intercept
from jaxcomp.flax.model import Model
from jaxcomp.quant.observers import OBSERVERS, combine, ema, observe, require_batches
from jaxcomp.quant.uniform import check_bits, minmax, qparams, ste_fake_quant

STATE_KEY = "act_quant"


def _rule_bits(rules: str | Sequence[Any], default_bits: int) -> list[Any]:
    """Normalize rules so that each selecting rule carries a bit width."""
    rules = [rules] if isinstance(rules, str) else list(rules)
    out = []
    for r in rules:
        if isinstance(r, str):
            out.append(r if r.startswith("!") else (r, default_bits))
        elif isinstance(r, tuple | list) and len(r) == 2:
            b = default_bits if r[1] is True else r[1]
            if b not in (False, 0, None):
                check_bits(b, f"act rule {r[0]!r} bits")
            out.append((r[0], b if b not in (False, None) else 0))
        else:
            raise ConfigError(f"act rules: bad rule {r!r}; use 'pattern', '!pattern' or "
                              "(pattern, bits)")
    return out


class ActQuant:
    """A model wrapper that fake-quantizes module inputs; see the module docstring.

    Attributes:
      model: the wrapped :class:`Model` (use it with ``jaxcomp.train.fit``).
    """

    def __init__(self, base: Model, rules: str | Sequence[Any], bits: int = 8, *,
                 symmetric: bool = False, signed: bool = True, momentum: float = 0.9):
        check_bits(bits, "act_bits")
        self.base = base
        self.rules = _rule_bits(rules, bits)
        self.symmetric, self.signed, self.momentum = symmetric, signed, momentum
        self.model = Model(self._init, self._apply, f"{base.name}+act_quant", base.module)

    # ------------------------------------------------------------------ running
    def _hook_factory(self, aq: dict, mode: str, new: dict, captured: dict | None = None):
        def hook(path, module, args, kwargs, call_next):
            from jaxcomp.flax.intercept import rule_value

            bits = rule_value(self._matcher, path)
            if not bits:
                return call_next(*args, **kwargs)
            x = args[0]
            batch = minmax(jax.lax.stop_gradient(x).astype(jnp.float32))
            if mode == "init":
                # distinct buffers (a donated train state must not alias leaves)
                new[path] = {"lo": jnp.zeros((), jnp.float32), "hi": jnp.zeros((), jnp.float32),
                             "count": jnp.zeros((), jnp.int32),
                             "bits": jnp.asarray(bits, jnp.float32)}
                return call_next(*args, **kwargs)
            st = aq[path]
            batch = (batch[0].reshape(()), batch[1].reshape(()))
            if mode == "train":
                lo, hi = ema((st["lo"], st["hi"]), batch, st["count"], self.momentum)
                new[path] = {**st, "lo": lo, "hi": hi, "count": st["count"] + 1}
            elif mode.startswith("calib:"):
                obs = mode.split(":", 1)[1]
                cur = observe(jax.lax.stop_gradient(x).astype(jnp.float32), obs,
                              bits=st["bits"], symmetric=self.symmetric, signed=self.signed)
                cur = (cur[0].reshape(()), cur[1].reshape(()))
                lo, hi = combine((st["lo"], st["hi"]), cur, st["count"], obs, self.momentum)
                new[path] = {**st, "lo": lo, "hi": hi, "count": st["count"] + 1}
                return call_next(*args, **kwargs)  # calibrate on float activations
            else:  # eval
                seen = st["count"] > 0
                lo = jnp.where(seen, st["lo"], batch[0])
                hi = jnp.where(seen, st["hi"], batch[1])
            if captured is not None:
                captured[path] = (lo, hi, st["bits"])
            s, z = qparams(lo, hi, st["bits"], symmetric=self.symmetric, signed=self.signed)
            xq = ste_fake_quant(x, s, z, st["bits"], symmetric=self.symmetric,
                                signed=self.signed)
            return call_next(xq, *args[1:], **kwargs)

        return hook

    def _run(self, params, ms, x, mode, rng=None, captured=None):
        aq = (ms or {}).get(STATE_KEY, {})
        rest = {k: v for k, v in (ms or {}).items() if k != STATE_KEY}
        new: dict[str, Any] = {}
        hook = self._hook_factory(aq, mode, new, captured)
        train = mode == "train"
        with intercept(self.rules, hook, what="act_quant rules") as m:
            self._matcher = m
            out, rest = self.base.apply(params, rest, x, train=train, rng=rng)
        aq_new = {**aq, **new} if mode != "eval" else aq
        return out, {**(rest or {}), STATE_KEY: aq_new}

    def _init(self, key, x):
        params, ms = self.base.init(key, x)
        _, ms = self._run(params, ms, x, "init")
        return params, ms

    def _apply(self, params, ms, x, *, train=False, rng=None):
        return self._run(params, ms, x, "train" if train else "eval", rng)

    # ------------------------------------------------------------------ PTQ
    def calibrate(self, params: Any, ms: Any, batches: Iterable[Any], *,
                  observer: str = "minmax", jit: bool = True) -> Any:
        """Set activation ranges from calibration batches (inputs ``x``); returns new ms.

        Raises:
          ConfigError: no batches, or an unknown observer.
        """
        check_choice("observer", observer, OBSERVERS)
        aq = {p: {**s, "count": jnp.zeros((), jnp.int32)} for p, s in ms[STATE_KEY].items()}
        ms = {**ms, STATE_KEY: aq}
        fn = lambda p, s, xb: self._run(p, s, xb, f"calib:{observer}")[1]
        fn = jax.jit(fn) if jit else fn
        n = 0
        for xb in batches:
            ms = fn(params, ms, xb)
            n += 1
        require_batches(n)
        return ms

    def ranges(self, params: Any, ms: Any, x: Any) -> dict[str, tuple]:
        """``{path: (lo, hi, bits)}`` the eval pass uses for input ``x`` (for export)."""
        captured: dict[str, Any] = {}
        self._run(params, ms, x, "eval", captured=captured)
        return captured


def act_quant(model: Model, rules: str | Sequence[Any], bits: int = 8, *,
              symmetric: bool = False, signed: bool = True, momentum: float = 0.9) -> ActQuant:
    """Fake-quantize the inputs of a model's modules matched by ``rules``.

    ``model`` is a linen (:func:`~jaxcomp.flax.from_linen`) or NNX
    (:func:`~jaxcomp.flax.from_nnx`) model; NNX module paths are state paths
    such as ``block0/conv1`` or ``layers/0``. The model state is the wrapped
    model's state plus ``"act_quant"``.
    """
    return ActQuant(model, rules, bits, symmetric=symmetric, signed=signed, momentum=momentum)


def act_quant_nnx(make: Callable, rules: str | Sequence[Any], bits: int = 8, *,
                  symmetric: bool = False, signed: bool = True,
                  momentum: float = 0.9) -> ActQuant:
    """Like :func:`act_quant` for an NNX module constructor ``make(rngs) -> module``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxcomp.models import NNXMLP
        >>> aq = act_quant_nnx(lambda rngs: NNXMLP(4, (8,), 2, rngs=rngs), [("layers/.*", 8)])
        >>> params, ms = aq.model.init(jax.random.key(0), jnp.ones((1, 4)))
        >>> sorted(ms["act_quant"])
        ['layers/0', 'layers/1']
    """
    from jaxcomp.flax.nnx import from_nnx

    return ActQuant(from_nnx(make), rules, bits, symmetric=symmetric, signed=signed,
                    momentum=momentum)
