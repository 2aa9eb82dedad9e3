"""BatchNorm folding into the preceding Conv/Dense (before quantization).

:func:`fold_batchnorm` finds each ``BatchNorm`` whose input is the output of a
``Conv``/``Dense`` (by tracing one eval-mode forward pass through the
interception adapter; linen and NNX models alike), and folds its running statistics into that layer:

``kernel' = kernel * γ/√(σ²+ε)`` (per output channel),
``bias' = β + (bias - μ) * γ/√(σ²+ε)``.

It returns a :class:`Folded` holding a BN-free :class:`~jaxcomp.flax.Model`
whose params are the folded kernels plus a ``bias`` leaf for each folded
layer (no BatchNorm params, no ``batch_stats``), so weight quantization sees
the folded kernels — as deployed. The folded model's outputs equal the
original model's eval-mode outputs to float rounding.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp.models import get_model
    >>> from jaxcomp.quant.bnfold import fold_batchnorm
    >>> model = get_model("rescnn", input_shape=(8, 8, 1), num_classes=3, channels=(4,))
    >>> x = jnp.ones((2, 8, 8, 1))
    >>> params, ms = model.init(jax.random.key(0), x)
    >>> f = fold_batchnorm(model, params, ms, x)
    >>> sorted(f.pairs.items())[0]
    ('block0/conv1', 'block0/bn1')
    >>> y, _ = f.model.apply(f.params, {}, x)
    >>> bool(jnp.allclose(y, model.apply(params, ms, x)[0], atol=1e-5))
    True
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxcomp.core import paths as _paths
from jaxcomp.core.errors import ConfigError
from jaxcomp.flax.intercept import intercept
from jaxcomp.flax.model import Model
from jaxcomp.flax.modules import batch_stats, is_nnx, layer_kind, pure_params, use_bias


class Folded(NamedTuple):
    """A BN-free model, its folded params, and which layer absorbed which BatchNorm."""

    model: Model
    params: Any
    pairs: dict[str, str]


def _get(tree: Any, path: str) -> Any:
    node = tree
    for part in path.split("/"):
        node = node[part]
    return node


def find_pairs(model: Model, params: Any, model_state: Any, x: Any) -> dict[str, str]:
    """``{layer_path: bn_path}`` for every BatchNorm fed directly by a Conv/Dense."""
    last: dict[str, Any] = {}
    pairs: dict[str, str] = {}

    def hook(path, module, args, kwargs, call_next):
        out = call_next(*args, **kwargs)
        kind = layer_kind(module)
        if kind in ("conv", "dense"):
            last[id(out)] = path
        elif kind == "batchnorm" and args and id(args[0]) in last:
            pairs[last[id(args[0])]] = path
        return out

    with intercept([".*"], hook, check=False):
        model.apply(params, model_state, x, train=False)
    return pairs


def fold_batchnorm(model: Model, params: Any, model_state: Any, x: Any) -> Folded:
    """Fold every Conv/Dense→BatchNorm pair of a model (eval-mode statistics).

    Args:
      model: a linen or NNX :class:`Model` (e.g. ``get_model("rescnn", ...)``, or
        ``from_nnx(make)`` of an NNX ResNet).
      params, model_state: its params and model state (linen
        ``{"batch_stats": ...}``; NNX the non-param ``nnx.State``).
      x: an example input batch (used once to trace the call graph).

    The folded params are a nested dict of arrays for both APIs (NNX state
    paths, e.g. ``block0/conv1/kernel``).

    Raises:
      ConfigError: the model has no foldable BatchNorm.
    """
    pairs = find_pairs(model, params, model_state, x)
    if not pairs:
        n_bn = _count_bn(batch_stats(model_state))
        raise ConfigError(f"fold_batchnorm: {model.name} has no BatchNorm fed directly by a "
                          f"Conv or Dense layer (BatchNorm statistics found: {n_bn})")
    stats = batch_stats(model_state)
    eps_of: dict[str, float] = {}

    def record_eps(path, module, args, kwargs, call_next):
        eps_of[path] = float(module.epsilon)
        return call_next(*args, **kwargs)

    with intercept([re.escape(b) for b in pairs.values()], record_eps, check=False):
        model.apply(params, model_state, x, train=False)

    template = pure_params(params)
    new = jax.tree.map(lambda a: a, template)  # a structural copy (dicts are rebuilt)
    new = _to_dict(new)
    for layer, bn in pairs.items():
        p_bn, s_bn = _get(template, bn), _get(stats, bn)
        scale = p_bn["scale"] if "scale" in p_bn else jnp.ones_like(s_bn["mean"])
        shift = p_bn["bias"] if "bias" in p_bn else jnp.zeros_like(s_bn["mean"])
        g = scale / jnp.sqrt(s_bn["var"] + eps_of[bn])
        lp = _get(new, layer)
        b = lp.get("bias", jnp.zeros_like(s_bn["mean"]))
        lp["kernel"] = lp["kernel"] * g
        lp["bias"] = shift + (b - s_bn["mean"]) * g
    for bn in pairs.values():
        *parent, last = bn.split("/")
        node = _get(new, "/".join(parent)) if parent else new
        node.pop(last)
    folded_layers = set(pairs)
    bn_paths = set(pairs.values())
    nnx_model = is_nnx(model)
    current: dict[str, Any] = {}

    def hook(path, module, args, kwargs, call_next):
        if path in bn_paths:
            return args[0]
        out = call_next(*args, **kwargs)
        if path in folded_layers and not use_bias(module):
            out = out + _get(current["p"], path)["bias"]
        return out

    def apply(p, ms, xb, *, train: bool = False, rng=None):
        del ms, train
        current["p"] = p
        if nnx_model:
            # NNX merges a fixed structure: the folded kernels and biases where the
            # original has them, the (bypassed) BatchNorms' own variables as they were
            run_p, run_ms = _fill(template, p), model_state
        else:  # linen ignores the extra bias leaves and never reads the bypassed stats
            run_p, run_ms = p, {}
        # check=False: an outer interceptor (e.g. the integer path) may replace a layer's
        # call, so this one does not see it
        with intercept(sorted(re.escape(q) for q in folded_layers | bn_paths), hook,
                       check=False):
            out, _ = model.apply(run_p, run_ms, xb, train=False, rng=rng)
        return out, {}

    def init(key, xb):
        p, ms = model.init(key, xb)
        return fold_batchnorm(model, p, ms, xb).params, {}

    return Folded(Model(init, apply, f"{model.name}+bnfold", model.module), new, pairs)


def _fill(template: Any, p: Any) -> Any:
    """``template``'s structure with the leaves that ``p`` has at the same paths."""
    have = _paths.path_dict(p)
    return _paths.map_with_path(lambda path, leaf: have.get(path, leaf), template)


def _count_bn(stats: Any) -> int:
    return sum(1 for path in _paths.all_paths(stats) if path.endswith("mean"))


def _to_dict(tree: Any) -> Any:
    if isinstance(tree, dict) or hasattr(tree, "items"):
        return {k: _to_dict(v) for k, v in tree.items()}
    return tree
