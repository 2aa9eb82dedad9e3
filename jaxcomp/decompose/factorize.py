"""Convert a trained linen or NNX model into its factorized twin.

:func:`factorize` takes a :class:`jaxcomp.flax.Model` (``from_linen`` or
``from_nnx``), its trained params and a spec (``{module_path: {"method", "rank"}}``, see
:mod:`jaxcomp.decompose.convert`) and returns a :class:`Factorized` holding the
factorized model, its params and the spec. The chosen ``nn.Dense`` / ``nn.Conv``
(or ``nnx.Linear`` / ``nnx.Conv``) layers are replaced at call time (through the
shared :func:`jaxcomp.flax.intercept`) by low-rank, Tucker or CP layers whose
params (``u, v`` / ``first, core, last`` / ``first, vertical, horizontal, last``
+ ``bias``) live at the same module path; every other layer and
param is untouched. The factorized model is a normal ``Model``: ``jaxcomp.train.fit``
fine-tunes it, ``jax.jit`` compiles it.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp.models import get_model
    >>> from jaxcomp.decompose.factorize import factorize
    >>> m = get_model("mlp", input_shape=(8,), num_classes=3, features=(16,))
    >>> x = jnp.ones((2, 8))
    >>> params, ms = m.init(jax.random.key(0), x)
    >>> f = factorize(m, params, {"Dense_0": {"method": "svd", "rank": 4}})
    >>> sorted(f.params["Dense_0"])
    ['bias', 'u', 'v']
    >>> f.model.apply(f.params, ms, x)[0].shape
    (2, 3)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxcomp.core import paths as _paths
from jaxcomp.core.errors import ConfigError, nearest
from jaxcomp.decompose import layers as L
from jaxcomp.decompose.convert import (
    FACTOR_NAMES,
    decompose_kernel,
    normalize_spec,
    reconstruct_kernel,
)
from jaxcomp.flax.intercept import intercept
from jaxcomp.flax.model import Model
from jaxcomp.flax.modules import is_nnx, layer_kind, out_features, pure_params, use_bias


class Factorized(NamedTuple):
    """``model`` (a :class:`Model`), ``params`` (factors in place of kernels), ``spec``."""

    model: Model
    params: Any
    spec: dict[str, dict[str, Any]]


def _conv_cfg(mod: Any) -> tuple:
    """(kernel_size, strides, padding, dilation, groups, input_dilation) of a linen/NNX conv."""
    return (tuple(mod.kernel_size), mod.strides, mod.padding, mod.kernel_dilation,
            mod.feature_group_count, getattr(mod, "input_dilation", 1))


def _hook(spec: Mapping[str, Mapping[str, Any]], seen: set[str], factors: Any = None):
    """The interception hook: a spec layer runs its factorized form. Linen layers create /
    read their factor params in their own scope; NNX layers read them from ``factors``
    (the factorized params, a nested dict) at their path."""
    def hook(path, mod, args, kwargs, call_next):
        entry = spec.get(path)
        kind = layer_kind(mod)
        if entry is None or kind not in ("dense", "conv"):
            return call_next(*args, **kwargs)
        seen.add(path)
        x = args[0] if args else kwargs["inputs"]
        method, rank = entry["method"], entry["rank"]
        bias = use_bias(mod)
        node = None if factors is None else _module_params_any(factors, path)
        p = lambda make: make() if node is None else {**node, "bias": node.get("bias")}  # noqa
        if kind == "dense":
            if method != "svd":
                raise ConfigError(f"{path}: method {method!r} needs a conv layer; "
                                  "use 'svd' for Dense")
            f = p(lambda: L.lowrank_params(mod, x.shape[-1], out_features(mod), rank, bias))
            return L.lowrank_dense(x, f["u"], f["v"], f["bias"])
        if method == "svd":
            raise ConfigError(f"{path}: 'svd' needs a Dense layer; use 'tucker2' or 'cp'")
        ks, strides, padding, dilation, groups, in_dil = _conv_cfg(mod)
        L._check_conv(path, ks, strides, dilation, groups)
        if in_dil not in (1, None, (1, 1)):
            raise ConfigError(f"{path}: input_dilation={in_dil} not supported")
        strides, feats = L._strides(strides), out_features(mod)
        if method == "tucker2":
            f = p(lambda: L.tucker_params(mod, x.shape[-1], feats, ks, rank, bias))
            return L.tucker_conv(x, f["first"], f["core"], f["last"], f["bias"],
                                 strides=strides, padding=padding)
        f = p(lambda: L.cp_params(mod, x.shape[-1], feats, ks, rank, bias))
        return L.cp_conv(x, f["first"], f["vertical"], f["horizontal"], f["last"], f["bias"],
                         strides=strides, padding=padding)

    return hook


def _rules(spec) -> list[str]:
    return [re.escape(p) for p in spec]


def _nnx_base_params(fparams: Any, spec) -> Any:
    """The NNX base model's params: each spec layer's factors swapped for a placeholder
    kernel (the intercepted layer never reads it)."""
    out = fparams
    for path, entry in spec.items():
        node = _module_params_any(fparams, path)
        new = {k: v for k, v in node.items() if k not in FACTOR_NAMES[entry["method"]]}
        new["kernel"] = jnp.zeros((), jnp.float32)
        out = _set_module_params(out, path, new)
    return out


def factorized_model(base: Model, spec: Mapping[str, Mapping[str, Any]]) -> Model:
    """``base`` (linen or NNX) with the spec's layers factorized (same name, same paths).

    Both run through :func:`jaxcomp.flax.intercept`. An NNX model's params are a
    nested dict (``nnx.to_pure_dict`` layout) with the factors in place of the kernels.
    ``init`` raises :class:`ConfigError` if a spec path names no Dense/Conv layer.
    """
    spec = normalize_spec(spec)
    if base.module is None:
        raise ConfigError(f"factorize: model {base.name!r} has no Flax module; wrap it with "
                          "jaxcomp.flax.from_linen or from_nnx")
    nnx_base = is_nnx(base)

    def init(key, x):
        if nnx_base:
            params, ms = base.init(key, x)
            params = pure_params(params)
            for path in spec:
                _module_params(params, path)  # a clear error for a path that is no layer
            return factorize_params(params, spec, key=key), ms
        seen: set[str] = set()
        with intercept(_rules(spec), _hook(spec, seen), what="factorize", check=False):
            out = base.init(key, x)
        _check_seen(spec, seen, out[0])
        return out

    def apply(params, model_state, x, *, train: bool = False, rng=None):
        seen: set[str] = set()
        params = pure_params(params) if nnx_base else params
        hook = _hook(spec, seen, params if nnx_base else None)
        base_params = _nnx_base_params(params, spec) if nnx_base else params
        with intercept(_rules(spec), hook, what="factorize", check=False):
            out = base.apply(base_params, model_state, x, train=train, rng=rng)
        if nnx_base:
            _check_seen(spec, seen, params)
        return out

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
    """Decompose the spec's kernels of a trained linen or NNX model.

    Args:
      base: the trained model (``from_linen`` or ``from_nnx``).
      params: its params (an NNX ``State`` is taken as its pure dict).
      spec: ``{module_path: {"method": "svd"|"tucker2"|"cp", "rank": ...}}``.
      key: needed for CP initialization and randomized SVD.
      n_iter: HOOI sweeps (Tucker-2, default 10) or ALS sweeps (CP, default 50).
      randomized: use randomized SVD for Dense layers.

    Returns:
      :class:`Factorized`; ``model.apply(params, ...)`` equals the base model on
      :func:`reconstruct_params` up to float32 rounding.
    """
    spec = normalize_spec(spec)
    fparams = factorize_params(pure_params(params), spec, key=key, n_iter=n_iter,
                               randomized=randomized)
    return Factorized(factorized_model(base, spec), fparams, spec)
