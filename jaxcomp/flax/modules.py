"""Layer facts for linen and NNX alike: what a module is (Dense, Conv, BatchNorm)
and how it is configured, and where a model state keeps BatchNorm statistics.

Interception hooks (:mod:`jaxcomp.flax.intercept`) receive the module being
called; these helpers let one hook serve both APIs (``nn.Dense`` /
``nnx.Linear``, ``nn.Conv`` / ``nnx.Conv``, ``nn.BatchNorm`` / ``nnx.BatchNorm``).

Example:
    >>> import flax.linen as nn
    >>> from flax import nnx
    >>> from jaxcomp.flax.modules import conv_config, layer_kind
    >>> layer_kind(nn.Dense(3)), layer_kind(nnx.Linear(2, 3, rngs=nnx.Rngs(0)))
    ('dense', 'dense')
    >>> conv_config(nnx.Conv(2, 4, (3, 3), strides=2, rngs=nnx.Rngs(0)))["strides"]
    (2, 2)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
from flax import nnx

from jaxcomp.flax.model import Model


def layer_kind(module: Any) -> str | None:
    """``"dense"``, ``"conv"``, ``"batchnorm"`` or ``None`` (any other module)."""
    if isinstance(module, nn.Dense | nnx.Linear):
        return "dense"
    if isinstance(module, nn.Conv | nnx.Conv):
        return "conv"
    if isinstance(module, nn.BatchNorm | nnx.BatchNorm):
        return "batchnorm"
    return None


def _tuple(v: Any, n: int) -> tuple[int, ...]:
    if v is None:
        return (1,) * n
    if isinstance(v, int):
        return (v,) * n
    return tuple(v)


def conv_config(module: Any) -> dict[str, Any]:
    """``{kernel_size, features, strides, padding, dilation, groups}`` of a Conv
    (linen or NNX); tuples have one entry per spatial axis."""
    ks = tuple(module.kernel_size) if not isinstance(module.kernel_size, int) \
        else (module.kernel_size,)
    nd = len(ks)
    features = module.features if isinstance(module, nn.Module) else module.out_features
    return {"kernel_size": ks, "features": int(features),
            "strides": _tuple(module.strides, nd), "padding": module.padding,
            "dilation": _tuple(module.kernel_dilation, nd),
            "groups": int(module.feature_group_count)}


def out_features(module: Any) -> int:
    """Output features of a Dense / Linear or Conv layer."""
    return int(module.features if isinstance(module, nn.Module) else module.out_features)


def use_bias(module: Any) -> bool:
    """Whether a Dense/Conv layer adds its own bias."""
    return bool(getattr(module, "use_bias", True))


def is_nnx(model: Model) -> bool:
    """Whether a :class:`Model` wraps an NNX constructor (``from_nnx``), not a linen module."""
    return not isinstance(model.module, nn.Module) and callable(model.module)


def batch_stats(model_state: Any) -> dict[str, Any]:
    """BatchNorm running statistics as a nested dict ``{..: {"mean", "var"}}``.

    Linen: ``model_state["batch_stats"]``; NNX: the ``nnx.BatchStat`` variables
    of the state (their values). Empty when the model has none.

    Example:
        >>> from flax import nnx
        >>> bn = nnx.BatchNorm(3, rngs=nnx.Rngs(0))
        >>> _, _, rest = nnx.split(bn, nnx.Param, ...)
        >>> sorted(batch_stats(rest))
        ['mean', 'var']
    """
    if not model_state:
        return {}
    if isinstance(model_state, Mapping) and "batch_stats" in model_state \
            and not isinstance(model_state["batch_stats"], nnx.Variable):
        return _plain(model_state["batch_stats"])

    def walk(node: Any) -> Any:
        out = {}
        for k, v in node.items():
            if isinstance(v, nnx.BatchStat):
                out[k] = v[...]
            elif isinstance(v, Mapping):
                sub = walk(v)
                if sub:
                    out[k] = sub
        return out

    return walk(model_state) if isinstance(model_state, Mapping) else {}


def _plain(tree: Any) -> Any:
    if isinstance(tree, Mapping):
        return {k: _plain(v) for k, v in tree.items()}
    return tree


def pure_params(params: Any) -> dict[str, Any]:
    """Params as a nested dict of arrays (an NNX ``State`` through ``nnx.to_pure_dict``)."""
    if isinstance(params, nnx.State):
        return _plain(nnx.to_pure_dict(params))
    return _plain(params)
