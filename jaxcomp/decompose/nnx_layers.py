"""Factorized layers for Flax NNX, and in-place conversion of an NNX model.

``LowRankLinear``, ``TuckerConv`` and ``CPConv`` hold the same params as their
linen counterparts (:mod:`jaxcomp.decompose.layers`). :func:`factorize_nnx`
returns a copy of an NNX module whose chosen ``nnx.Linear`` / ``nnx.Conv``
sub-modules (addressed by their state path, e.g. ``layers/0``) are replaced by
factorized layers initialized from the trained kernels.

Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from jaxcomp.decompose.nnx_layers import factorize_nnx
    >>> from jaxcomp.models.mlp import NNXMLP
    >>> m = NNXMLP(8, (16,), 3, rngs=nnx.Rngs(0))
    >>> f = factorize_nnx(m, {"layers/0": {"method": "svd", "rank": 4}})
    >>> type(f.layers[0]).__name__, f(jnp.ones((2, 8))).shape
    ('LowRankLinear', (2, 3))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxcomp.core.errors import ConfigError
from jaxcomp.decompose import layers as L
from jaxcomp.decompose.convert import decompose_kernel, normalize_spec


def _param(x) -> nnx.Param:
    return nnx.Param(jnp.asarray(x, jnp.float32))


class LowRankLinear(nnx.Module):
    """``x @ u @ v + bias``."""

    def __init__(self, u: jax.Array, v: jax.Array, bias: jax.Array | None = None):
        self.u, self.v = _param(u), _param(v)
        self.bias = _param(bias) if bias is not None else None

    def __call__(self, x):
        return L.lowrank_dense(x, self.u[...], self.v[...],
                               None if self.bias is None else self.bias[...])


class TuckerConv(nnx.Module):
    """1×1 → k×k → 1×1 convs from Tucker-2 factors."""

    def __init__(self, first, core, last, bias=None, *, strides=(1, 1), padding="SAME"):
        self.first, self.core, self.last = _param(first), _param(core), _param(last)
        self.bias = _param(bias) if bias is not None else None
        self.strides, self.padding = tuple(strides), padding

    def __call__(self, x):
        return L.tucker_conv(x, self.first[...], self.core[...], self.last[...],
                             None if self.bias is None else self.bias[...],
                             strides=self.strides, padding=self.padding)


class CPConv(nnx.Module):
    """1×1 → depthwise kh×1 → depthwise 1×kw → 1×1 convs from CP factors."""

    def __init__(self, first, vertical, horizontal, last, bias=None, *, strides=(1, 1),
                 padding="SAME"):
        self.first, self.vertical = _param(first), _param(vertical)
        self.horizontal, self.last = _param(horizontal), _param(last)
        self.bias = _param(bias) if bias is not None else None
        self.strides, self.padding = tuple(strides), padding

    def __call__(self, x):
        return L.cp_conv(x, self.first[...], self.vertical[...], self.horizontal[...],
                         self.last[...], None if self.bias is None else self.bias[...],
                         strides=self.strides, padding=self.padding)


def _get(parent: Any, part: str) -> Any:
    if isinstance(parent, Sequence | nnx.List) and part.isdigit():
        return parent[int(part)]
    if not hasattr(parent, part):
        raise ConfigError(f"factorize_nnx: no sub-module {part!r} in {type(parent).__name__}")
    return getattr(parent, part)


def _set(parent: Any, part: str, value: Any) -> None:
    if isinstance(parent, Sequence | nnx.List) and part.isdigit():
        parent[int(part)] = value
    else:
        setattr(parent, part, value)


def _factorized_layer(layer: Any, path: str, entry: Mapping[str, Any], key, n_iter):
    if not isinstance(layer, nnx.Linear | nnx.Conv):
        raise ConfigError(f"{path}: {type(layer).__name__} is not nnx.Linear or nnx.Conv; "
                          f"only those layers can be factorized")
    if isinstance(layer, nnx.Linear) and entry["method"] != "svd":
        raise ConfigError(f"{path}: method {entry['method']!r} needs a conv; use 'svd'")
    if isinstance(layer, nnx.Conv) and entry["method"] == "svd":
        raise ConfigError(f"{path}: 'svd' needs a Linear layer; use 'tucker2' or 'cp'")
    bias = None if getattr(layer, "bias", None) is None else layer.bias[...]
    f = decompose_kernel(layer.kernel[...], entry["method"], entry["rank"], key=key,
                         n_iter=n_iter, what=f"{path}/kernel")
    if isinstance(layer, nnx.Linear):
        return LowRankLinear(f["u"], f["v"], bias)
    L._check_conv(path, layer.kernel_size, layer.strides, layer.kernel_dilation,
                  layer.feature_group_count)
    kw = {"strides": L._strides(layer.strides), "padding": layer.padding}
    if entry["method"] == "tucker2":
        return TuckerConv(f["first"], f["core"], f["last"], bias, **kw)
    return CPConv(f["first"], f["vertical"], f["horizontal"], f["last"], bias, **kw)


def factorize_nnx(module: nnx.Module, spec: Mapping[str, Mapping[str, Any]], *,
                  key: jax.Array | None = None, n_iter: int | None = None) -> nnx.Module:
    """A copy of ``module`` with the spec's layers (state paths) factorized."""
    spec = normalize_spec(spec)
    out = nnx.clone(module)
    keys = dict(zip(spec, jax.random.split(key, len(spec)), strict=True)) if key is not None \
        else {}
    for path, entry in spec.items():
        parts = path.split("/")
        parent = out
        for part in parts[:-1]:
            parent = _get(parent, part)
        layer = _get(parent, parts[-1])
        _set(parent, parts[-1], _factorized_layer(layer, path, entry, keys.get(path), n_iter))
    return out
