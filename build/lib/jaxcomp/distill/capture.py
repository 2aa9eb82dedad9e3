"""Feature capture: run a linen or NNX :class:`~jaxcomp.flax.Model` and also
return the outputs of the submodules whose paths match some rules.

Rules are the ``where=``-style ordered regexes over module paths (``Dense_0``
for linen, ``layers/0`` for NNX); a rule that matches no module raises a
:class:`~jaxcomp.core.errors.ConfigError` naming the rule and the nearest module
paths. Capture works under ``jax.jit`` (the features are traced outputs).

Linen models go through :func:`jaxcomp.flax.intercept_linen`; NNX models through
:func:`jaxcomp.flax.intercept_nnx` on the merged module.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp.models import get_model
    >>> from jaxcomp.distill.capture import capture
    >>> m = get_model("mlp", input_shape=(4,), num_classes=3, features=(8, 6))
    >>> params, ms = m.init(jax.random.key(0), jnp.ones((1, 4)))
    >>> fm = capture(m, ["Dense_1"])
    >>> logits, feats, _ = fm.apply(params, ms, jnp.ones((2, 4)))
    >>> logits.shape, {k: v.shape for k, v in feats.items()}
    ((2, 3), {'Dense_1': (2, 6)})
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax

from jaxcomp.core.errors import ConfigError
from jaxcomp.flax.intercept import intercept_linen, intercept_nnx
from jaxcomp.flax.model import Model

Rules = str | Sequence[Any]


class FeatureModel(NamedTuple):
    """``apply(params, model_state, x, *, train=False, rng=None) -> (outputs, features,
    new_model_state)``; ``features`` maps module path to that module's output."""

    apply: Callable[..., tuple[Any, dict[str, jax.Array], Any]]
    model: Model
    rules: Rules


def _record(feats: dict[str, jax.Array]):
    def hook(path, module, args, kwargs, call_next):
        del module
        out = call_next(*args, **kwargs)
        feats[path] = out  # a module called twice keeps its last output
        return out

    return hook


def _linen_apply(model: Model, rules: Rules, what: str):
    def apply(params, model_state, x, *, train: bool = False, rng=None):
        feats: dict[str, jax.Array] = {}
        with intercept_linen(rules, _record(feats), what=what):
            out, new_ms = model.apply(params, model_state, x, train=train, rng=rng)
        return out, feats, new_ms

    return apply


def _nnx_apply(model: Model, rules: Rules, what: str):
    from flax import nnx

    from jaxcomp.flax.nnx import _takes_rngs, split_params

    make = model.module
    graphdef, _, _ = split_params(make(nnx.Rngs(0)))

    def apply(params, model_state, x, *, train: bool = False, rng=None):
        module = nnx.merge(graphdef, params, model_state)
        module.train() if train else module.eval()
        feats: dict[str, jax.Array] = {}
        with intercept_nnx(module, rules, _record(feats), what=what):
            if rng is not None and _takes_rngs(module):
                out = module(x, rngs=nnx.Rngs(dropout=rng))
            else:
                out = module(x)
        _, _, new_ms = split_params(module)
        return out, feats, new_ms

    return apply


def capture(model: Model, rules: Rules, *, what: str = "distill.features") -> FeatureModel:
    """Wrap ``model`` so that ``apply`` also returns the features selected by ``rules``.

    Args:
      model: a linen (``from_linen``) or NNX (``from_nnx``) model handle.
      rules: module-path regex rules (first full match wins; ``!pattern`` excludes).
      what: the config name used in error messages.
    """
    if isinstance(model.module, nn.Module):
        return FeatureModel(_linen_apply(model, rules, what), model, rules)
    if callable(model.module):
        return FeatureModel(_nnx_apply(model, rules, what), model, rules)
    raise ConfigError(f"{what}: cannot capture features of model {model.name!r}: it is neither "
                      "a linen module nor an NNX constructor (use jaxcomp.flax.from_linen / "
                      "from_nnx)")


def feature_shapes(fm: FeatureModel, params: Any, model_state: Any,
                   x: jax.Array) -> tuple[tuple, dict[str, tuple]]:
    """``(output_shape, {path: feature_shape})`` without running the model (``eval_shape``)."""
    out, feats, _ = jax.eval_shape(lambda p, s, x: fm.apply(p, s, x), params, model_state, x)
    return tuple(out.shape), {k: tuple(v.shape) for k, v in feats.items()}
