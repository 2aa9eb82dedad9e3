"""Convert a trained linen model into its factorized twin.

:func:`factorize` takes a :class:`jaxcomp.flax.Model` (from ``from_linen``), its
trained params and a spec (``{module_path: {"method", "rank"}}``, see
:mod:`jaxcomp.decompose.convert`) and returns a :class:`Factorized` holding the
factorized model, its params and the spec. The chosen ``nn.Dense`` / ``nn.Conv``
layers are replaced at call time (``nn.intercept_methods``) by low-rank, Tucker or
CP layers whose params (``u, v`` / ``first, core, last`` / ``first, vertical,
horizontal, last`` + ``bias``) live at the same module path; every other layer and
param is untouched. The factorized model is a normal ``Model``: ``jaxcomp.train.fit``
fine-tunes it, ``jax.jit`` compiles it.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp.models import get_model
    >>> from jaxcomp.decompose.factorize import factorize
    >>> m = get_model("mlp", input_shape=(8,), num_classes=3, features=(16,))
    >>> params, ms = m.init(jax.random.key(0), jnp.ones((1, 8)))
    >>> f = factorize(m, params, {"Dense_0": {"method": "svd", "rank": 4}})
    >>> sorted(f.params["Dense_0"])
    ['bias', 'u', 'v']
    >>> f.model.apply(f.params, ms, jnp.ones((2, 8)))[0].shape
    (2, 3)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax

from jaxcomp.core import paths as _paths
from jaxcomp.core.errors import ConfigError, nearest
from jaxcomp.decompose import layers as L
from jaxcomp.decompose.convert import (
    FACTOR_NAMES,
    decompose_kernel,
    normalize_spec,
    reconstruct_kernel,
)
from jaxcomp.flax.model import Model


class Factorized(NamedTuple):
    """``model`` (a :class:`Model`), ``params`` (factors in place of kernels), ``spec``."""

    model: Model
    params: Any
    spec: dict[str, dict[str, Any]]


def _interceptor(spec: Mapping[str, Mapping[str, Any]], seen: set[str]):
    def icpt(next_fun, args, kwargs, context):
        mod = context.module
        if context.method_name != "__call__" or not isinstance(mod, nn.Dense | nn.Conv):
            return next_fun(*args, **kwargs)
        path = "/".join(mod.path)
        entry = spec.get(path)
        if entry is None:
            return next_fun(*args, **kwargs)
        seen.add(path)
        x = args[0] if args else kwargs["inputs"]
        method, rank = entry["method"], entry["rank"]
        if isinstance(mod, nn.Dense):
            if method != "svd":
                raise ConfigError(f"{path}: method {method!r} needs a conv layer; "
                                  "use 'svd' for Dense")
            p = L.lowrank_params(mod, x.shape[-1], mod.features, rank, mod.use_bias)
            return L.lowrank_dense(x, p["u"], p["v"], p["bias"])
        if method == "svd":
            raise ConfigError(f"{path}: 'svd' needs a Dense layer; use 'tucker2' or 'cp'")
        L._check_conv(path, mod.kernel_size, mod.strides, mod.kernel_dilation,
                      mod.feature_group_count)
        if mod.input_dilation not in (1, None, (1, 1)):
            raise ConfigError(f"{path}: input_dilation={mod.input_dilation} not supported")
        strides = L._strides(mod.strides)
        ks = tuple(mod.kernel_size)
        if method == "tucker2":
            p = L.tucker_params(mod, x.shape[-1], mod.features, ks, rank, mod.use_bias)
            return L.tucker_conv(x, p["first"], p["core"], p["last"], p["bias"],
                                 strides=strides, padding=mod.padding)
        p = L.cp_params(mod, x.shape[-1], mod.features, ks, rank, mod.use_bias)
        return L.cp_conv(x, p["first"], p["vertical"], p["horizontal"], p["last"], p["bias"],
                         strides=strides, padding=mod.padding)

    return icpt


def factorized_model(base: Model, spec: Mapping[str, Mapping[str, Any]]) -> Model:
    """The linen ``base`` model with the spec's layers factorized (same name, same paths).

    ``init`` raises :class:`ConfigError` if a spec path names no Dense/Conv layer.
    """
    spec = normalize_spec(spec)
    if base.module is None or not isinstance(base.module, nn.Module):
        raise ConfigError(f"factorize: model {base.name!r} is not a linen model; "
                          "use jaxcomp.decompose.nnx_layers.factorize_nnx for NNX modules")

    def init(key, x):
        seen: set[str] = set()
        with nn.intercept_methods(_interceptor(spec, seen)):
            out = base.init(key, x)
        _check_seen(spec, seen, out[0])
        return out

    def apply(params, model_state, x, *, train: bool = False, rng=None):
        with nn.intercept_methods(_interceptor(spec, set())):
            return base.apply(params, model_state, x, train=train, rng=rng)

    return Model(init, apply, base.name, base.module)


def _check_seen(spec, seen, params):
    missing = [p for p in spec if p not in seen]
    if missing:
        mods = sorted({"/".join(p.split("/")[:-1]) for p in _paths.all_paths(params)})
        raise ConfigError(f"factorize: {missing} name no Dense/Conv layer of the model; "
                          f"nearest layers: {nearest(missing[0], mods, 5)}")


def _module_params(params: Any, path: str) -> dict[str, Any]:
    node = params
    for part in path.split("/"):
        if not isinstance(node, Mapping) or part not in node:
            mods = sorted({"/".join(p.split("/")[:-1]) for p in _paths.all_paths(params)})
            raise ConfigError(f"factorize: {path!r} is not a layer of the params; "
                              f"nearest layers: {nearest(path, mods, 5)}")
        node = node[part]
    if "kernel" not in node:
        raise ConfigError(f"factorize: {path!r} has no kernel (keys: {sorted(node)})")
    return node


def _set_module_params(params: Any, path: str, value: dict[str, Any]) -> Any:
    parts = path.split("/")

    def rec(node, i):
        node = dict(node)
        node[parts[i]] = value if i == len(parts) - 1 else rec(node[parts[i]], i + 1)
        return node

    return rec(params, 0)


def factorize_params(params: Any, spec: Mapping[str, Mapping[str, Any]], *,
                     key: jax.Array | None = None, n_iter: int | None = None,
                     randomized: bool = False) -> Any:
    """Replace each spec layer's ``kernel`` by its factors (``bias`` kept)."""
    spec = normalize_spec(spec)
    keys = dict(zip(spec, jax.random.split(key, len(spec)), strict=True)) if key is not None \
        else {}
    out = params
    for path, entry in spec.items():
        node = _module_params(params, path)
        factors = decompose_kernel(node["kernel"], entry["method"], entry["rank"],
                                   key=keys.get(path), n_iter=n_iter, randomized=randomized,
                                   what=f"{path}/kernel")
        new = {k: v for k, v in node.items() if k != "kernel"}
        new.update(factors)
        out = _set_module_params(out, path, new)
    return out


def reconstruct_params(fparams: Any, spec: Mapping[str, Mapping[str, Any]]) -> Any:
    """The dense params the factorized model computes (factors multiplied back)."""
    spec = normalize_spec(spec)
    out = fparams
    for path, entry in spec.items():
        node = _module_params_any(fparams, path)
        factors = {k: node[k] for k in FACTOR_NAMES[entry["method"]]}
        new = {k: v for k, v in node.items() if k not in factors}
        new["kernel"] = reconstruct_kernel(factors, entry["method"])
        out = _set_module_params(out, path, new)
    return out


def _module_params_any(params, path):
    node = params
    for part in path.split("/"):
        node = node[part]
    return node


def factorize(base: Model, params: Any, spec: Mapping[str, Mapping[str, Any]], *,
              key: jax.Array | None = None, n_iter: int | None = None,
              randomized: bool = False) -> Factorized:
    """Decompose the spec's kernels of a trained linen model.

    Args:
      base: the trained model (``from_linen``).
      params: its params.
      spec: ``{module_path: {"method": "svd"|"tucker2"|"cp", "rank": ...}}``.
      key: needed for CP initialization and randomized SVD.
      n_iter: HOOI sweeps (Tucker-2, default 10) or ALS sweeps (CP, default 50).
      randomized: use randomized SVD for Dense layers.

    Returns:
      :class:`Factorized`; ``model.apply(params, ...)`` equals the base model on
      :func:`reconstruct_params` up to float32 rounding.
    """
    spec = normalize_spec(spec)
    fparams = factorize_params(params, spec, key=key, n_iter=n_iter, randomized=randomized)
    return Factorized(factorized_model(base, spec), fparams, spec)
