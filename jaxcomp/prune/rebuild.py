"""A real Flax module of the new widths after channel surgery, from a JSON structure record.

:func:`jaxcomp.prune.surgery.shrink` removes channels from the params; this
module turns the result into a model a fresh process can rebuild without the
original full-size params or the kept indices:

* :func:`structure_record` — a JSON-able dict: the framework, the model's
  class (importable name and, for linen, its fields), the example input's
  shape, and per changed layer its path, kind (``dense`` / ``conv`` /
  ``batchnorm``) and new sizes (``features``, ``in_features``,
  ``feature_group_count`` or ``num_features``), plus every leaf's new shape.
  :func:`~jaxcomp.prune.surgery.shrink` stores it as ``Shrunk.record``.
* :func:`rebuild` — the user's model class with the record's widths:
  linen: a :class:`Resized` module wrapping the original module (same param
  paths) whose Dense/Conv layers get the new ``features`` and whose parent
  modules get width fields overridden where a block compares a width field
  with its input (``x.shape[-1] != self.features``); NNX: the module built by
  the original constructor with each changed ``nnx.Linear`` / ``nnx.Conv`` /
  ``nnx.BatchNorm`` replaced by a new one of the new size at the same path.
* :func:`save_shrunk` / :func:`load_shrunk` — the shrunk variables as an orbax
  checkpoint and the record as ``structure.json`` in one directory.

Example:
    >>> import jax, jax.numpy as jnp, numpy as np
    >>> from jaxcomp.models import get_model
    >>> from jaxcomp.prune.surgery import shrink
    >>> from jaxcomp.prune.rebuild import rebuild
    >>> model = get_model("mlp", input_shape=(8,), num_classes=3, features=(6, 4))
    >>> x = jnp.ones((2, 8))
    >>> params, state = model.init(jax.random.key(0), x)
    >>> small = shrink(model, params, state, x, sparsity=0.5)
    >>> [(l["path"], l["in_features"], l["features"]) for l in small.record["layers"]]
    [('Dense_0', 8, 3), ('Dense_1', 3, 2), ('Dense_2', 2, 3)]
    >>> m = rebuild(small.record, model)
    >>> y = m.apply(small.params, small.model_state, x)[0]
    >>> bool(np.allclose(y, small.model.apply(small.params, small.model_state, x)[0], atol=1e-6))
    True
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
from collections.abc import Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxcomp.core import paths as _paths
from jaxcomp.core.errors import ConfigError
from jaxcomp.flax.linen import from_linen
from jaxcomp.flax.model import Model
from jaxcomp.flax.modules import batch_stats, is_nnx, layer_kind, pure_params
from jaxcomp.flax.nnx import from_nnx

FORMAT = "jaxcomp.surgery/1"


# ------------------------------------------------------------------ the record
def _jsonable(v: Any) -> bool:
    return isinstance(v, int | float | str | bool | None) or (
        isinstance(v, tuple | list) and all(_jsonable(u) for u in v))


def _qualname(obj: Any) -> str | None:
    mod, qn = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    return None if not mod or not qn or "<" in qn else f"{mod}.{qn}"


def _linen_fields(module: nn.Module) -> dict[str, Any] | None:
    out = {f: getattr(module, f) for f in getattr(module, "__dataclass_fields__", {})
           if f not in ("parent", "name")}
    if not all(_jsonable(v) for v in out.values()):
        return None
    return {f: list(v) if isinstance(v, tuple) else v for f, v in out.items()}


def _linen_calls(model: Model, x: Any) -> list[tuple[str, Any]]:
    """``(path, module)`` of every module call of a linen model's init, in call order."""
    calls: list[tuple[str, Any]] = []

    def rec(next_fun, args, kwargs, ctx):
        if ctx.method_name == "__call__" and ctx.module.path:
            path = "/".join(ctx.module.path)
            if all(p != path for p, _ in calls):
                calls.append((path, ctx.module))
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(rec):
        # a fresh function: a cached trace of model.init would bypass the interceptor
        jax.eval_shape(lambda k, v: model.init(k, v), jax.random.key(0),
                       jax.ShapeDtypeStruct(np.shape(x), jnp.result_type(x)))
    return calls


def _nnx_layers(make: Any) -> list[tuple[str, Any]]:
    module = nnx.eval_shape(lambda: make(nnx.Rngs(0)))
    return [("/".join(str(p) for p in path), node) for path, node in nnx.iter_graph(module)
            if path and layer_kind(node) is not None]


def _layer_entry(path: str, module: Any, old: Mapping[str, tuple], new: Mapping[str, tuple]):
    kind = layer_kind(module)
    if kind in ("dense", "conv"):
        k_old, k_new = old.get(f"{path}/kernel"), new.get(f"{path}/kernel")
        if k_old is None or k_new is None or k_old == k_new:
            return None
        g = int(getattr(module, "feature_group_count", 1) or 1)
        depthwise = g > 1 and k_old[-2] == 1
        new_g = k_new[-1] // (k_old[-1] // g) if depthwise else g
        return {"path": path, "kind": kind, "features": int(k_new[-1]),
                "in_features": int(k_new[-2] * new_g), "feature_group_count": int(new_g)}
    if kind == "batchnorm":
        for leaf in ("scale", "bias", "mean", "var"):
            a, b = old.get(f"{path}/{leaf}"), new.get(f"{path}/{leaf}")
            if a is not None and b is not None:
                return None if a == b else {"path": path, "kind": kind,
                                            "num_features": int(b[0])}
    return None


def _shapes(params: Any, model_state: Any) -> dict[str, tuple[int, ...]]:
    out = {p: tuple(np.shape(a)) for p, a in _paths.flatten(pure_params(params))}
    st = pure_params(model_state) if isinstance(model_state, nnx.State) \
        else batch_stats(model_state)
    out.update({p: tuple(np.shape(a)) for p, a in _paths.flatten(st)})
    return out


def _overrides(calls, entries: dict[str, dict]) -> dict[str, dict[str, int]]:
    """Integer width fields of user modules to set to a child layer's new width: for each
    field equal to the old features of a direct Dense/Conv child, the last such child's."""
    out: dict[str, dict[str, int]] = {}
    for path, mod in calls:
        if layer_kind(mod) is not None:
            continue
        for f in getattr(mod, "__dataclass_fields__", {}):
            v = getattr(mod, f, None)
            if f in ("parent", "name") or type(v) is not int:
                continue
            kids = [(p, m) for p, m in calls if p.rpartition("/")[0] == path
                    and layer_kind(m) in ("dense", "conv") and m.features == v]
            if kids and kids[-1][0] in entries and entries[kids[-1][0]]["features"] != v:
                out.setdefault(path, {})[f] = entries[kids[-1][0]]["features"]
    return out


def structure_record(model: Model, params: Any, model_state: Any, small_params: Any,
                     small_state: Any, x: Any) -> dict[str, Any]:
    """The JSON-able structure record of a shrunk model (see the module docstring).

    Args:
      model: the original (full-size) linen or NNX :class:`Model`.
      params, model_state: its full-size variables (shapes only).
      small_params, small_state: the shrunk variables.
      x: an example input batch (its shape and dtype are recorded).
    """
    old, new = _shapes(params, model_state), _shapes(small_params, small_state)
    nnx_model = is_nnx(model)
    calls = _nnx_layers(model.module) if nnx_model else _linen_calls(model, x)
    entries = {}
    for path, mod in calls:
        e = _layer_entry(path, mod, old, new)
        if e is not None:
            entries[path] = e
    cls = model.module if nnx_model else type(model.module)
    return {
        "format": FORMAT, "framework": "nnx" if nnx_model else "linen", "name": model.name,
        "module": {"class": _qualname(cls),
                   "fields": None if nnx_model else _linen_fields(model.module)},
        "input": {"shape": [1, *np.shape(x)[1:]], "dtype": str(jnp.result_type(x))},
        "layers": list(entries.values()),
        "overrides": {} if nnx_model else _overrides(calls, entries),
        "shapes": {p: list(s) for p, s in new.items()},
    }


# ------------------------------------------------------------------ rebuilding
class Resized(nn.Module):
    """``inner`` (a linen module) with the Dense/Conv ``features`` of ``layers``
    (``((path, features, feature_group_count), ...)``) and the width fields of
    ``overrides`` (``((path, ((field, value), ...)), ...)``); params keep their paths."""

    inner: nn.Module
    layers: tuple = ()
    overrides: tuple = ()

    def setup(self):
        nn.share_scope(self, self.inner)

    def _interceptor(self):
        feats = {p: (f, g) for p, f, g in self.layers}
        over = {p: dict(kv) for p, kv in self.overrides}

        def icpt(next_fun, args, kwargs, ctx):
            m = ctx.module
            if ctx.method_name == "__call__" and m.path:
                path = "/".join(m.path)
                if path not in feats and path not in over and m.path[0] == "inner":
                    path = "/".join(m.path[1:])  # attribute submodules (shared scope)
                if path in feats and isinstance(m, nn.Dense | nn.Conv):
                    object.__setattr__(m, "features", feats[path][0])
                    if isinstance(m, nn.Conv):
                        object.__setattr__(m, "feature_group_count", feats[path][1])
                for f, v in over.get(path, {}).items():
                    object.__setattr__(m, f, v)
            return next_fun(*args, **kwargs)

        return icpt

    def __call__(self, *args, **kwargs):
        with nn.intercept_methods(self._interceptor()):
            return self.inner(*args, **kwargs)


class ResizedTrain(Resized):
    """:class:`Resized` for modules whose ``__call__`` takes ``train``."""

    def __call__(self, *args, train: bool = False, **kwargs):
        with nn.intercept_methods(self._interceptor()):
            return self.inner(*args, train=train, **kwargs)


def _import(record: Mapping[str, Any]) -> Any:
    spec = record.get("module") or {}
    name = spec.get("class")
    if not name:
        raise ConfigError("rebuild: the record names no importable model class (a lambda or "
                          "a local class); pass module= (the original module or constructor)")
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):  # the longest importable module prefix
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for part in parts[i:]:
            obj = getattr(obj, part)
        break
    else:
        raise ConfigError(f"rebuild: cannot import {name!r}; pass module=")
    if record["framework"] == "nnx":
        return obj
    if spec.get("fields") is None:
        raise ConfigError(f"rebuild: the fields of {name!r} are not JSON-able; pass module=")
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in spec["fields"].items()}
    return obj(**fields)


def _new_nnx_layer(old: Any, entry: Mapping[str, Any], rngs: nnx.Rngs) -> Any:
    cls = type(old)
    skip = {"self", "rngs", "in_features", "out_features", "num_features", "mask"}
    kw = {n: getattr(old, n) for n in inspect.signature(cls.__init__).parameters
          if n not in skip and n in vars(old)}
    if getattr(old, "mask", None) is not None:
        raise ConfigError(f"rebuild: {entry['path']}: a Conv with a mask is not supported")
    if entry["kind"] == "batchnorm":
        return cls(entry["num_features"], **kw, rngs=rngs)
    if entry["kind"] == "conv":
        kw["feature_group_count"] = entry["feature_group_count"]
    return cls(entry["in_features"], entry["features"], **kw, rngs=rngs)


def resize_nnx(module: nnx.Module, record: Mapping[str, Any], rngs: nnx.Rngs) -> nnx.Module:
    """Replace, in place, each changed layer of ``module`` by one of the record's size."""
    for entry in record["layers"]:
        parts = entry["path"].split("/")
        parent = module
        for part in parts[:-1]:
            parent = parent[int(part)] if part.isdigit() else getattr(parent, part)
        last = parts[-1]
        old = parent[int(last)] if last.isdigit() else getattr(parent, last, None)
        if layer_kind(old) != entry["kind"]:
            raise ConfigError(f"rebuild: {entry['path']!r} is {type(old).__name__}, not a "
                              f"{entry['kind']} layer")
        new = _new_nnx_layer(old, entry, rngs)
        if last.isdigit():
            parent[int(last)] = new
        else:
            setattr(parent, last, new)
    return module


def _check(model: Model, record: Mapping[str, Any]) -> None:
    x = jax.ShapeDtypeStruct(tuple(record["input"]["shape"]), record["input"]["dtype"])
    p, s = jax.eval_shape(lambda k, v: model.init(k, v), jax.random.key(0), x)
    got = _shapes(p, s)
    want = {k: tuple(v) for k, v in record["shapes"].items()}
    bad = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
    if bad:
        raise ConfigError(f"rebuild: the rebuilt model's variables differ from the record at "
                          f"{[(k, got.get(k), want.get(k)) for k in bad[:5]]} (got, recorded);"
                          " pass overrides= for width fields the model derives shapes from")


def rebuild(record: Mapping[str, Any], module: Any = None, *,
            overrides: Mapping[str, Mapping[str, int]] | None = None,
            check: bool = True) -> Model:
    """The model of ``record``'s widths, built from the original model class.

    Args:
      record: from :func:`structure_record` (``Shrunk.record``) or ``structure.json``.
      module: the original linen module, NNX constructor ``make(rngs)``, or their
        :class:`Model`; imported from the record's class name when None.
      overrides: linen only: extra ``{module path: {field: value}}`` width fields.
      check: verify (abstractly) that the rebuilt variables have the recorded shapes.

    Returns:
      A :class:`Model` whose ``module`` is a :class:`Resized` linen module, or an
      NNX constructor giving a module with the new layer sizes.
    """
    if record.get("format") != FORMAT:
        raise ConfigError(f"rebuild: record format {record.get('format')!r}; expected "
                          f"{FORMAT!r}")
    module = _import(record) if module is None else module
    module = module.module if isinstance(module, Model) else module
    name = f"{record.get('name', 'model')}_shrunk"
    if record["framework"] == "nnx":
        def make(rngs, module=module):
            return resize_nnx(module(rngs), record, rngs)
        model = from_nnx(make, name)
    else:
        over = {p: dict(v) for p, v in record.get("overrides", {}).items()}
        for p, v in (overrides or {}).items():
            over.setdefault(p, {}).update(v)
        layers = tuple((e["path"], e["features"], e["feature_group_count"])
                       for e in record["layers"] if e["kind"] in ("dense", "conv"))
        over_t = tuple((p, tuple(sorted(v.items()))) for p, v in sorted(over.items()))
        takes_train = "train" in inspect.signature(module.__call__).parameters
        cls = ResizedTrain if takes_train else Resized
        model = from_linen(cls(module, layers, over_t), name)
    if check:
        _check(model, record)
    return model


# ------------------------------------------------------------------ save / load
class Restored(NamedTuple):
    """What :func:`load_shrunk` gives back."""
    model: Model
    params: Any
    model_state: Any
    record: dict[str, Any]


def _pure_state(ms: Any) -> Any:
    return pure_params(ms) if isinstance(ms, nnx.State) else jax.tree.map(jnp.asarray, ms)


def save_shrunk(directory: str, small: Any, *, record: Mapping[str, Any] | None = None) -> str:
    """Write ``small.params`` / ``small.model_state`` (orbax) and the record (JSON)."""
    import orbax.checkpoint as ocp

    record = dict(record if record is not None else small.record)
    os.makedirs(directory := os.path.abspath(directory), exist_ok=True)
    tree = {"params": pure_params(small.params)}
    if jax.tree.leaves(_pure_state(small.model_state)):
        tree["model_state"] = _pure_state(small.model_state)
    with ocp.StandardCheckpointer() as ck:
        ck.save(os.path.join(directory, "variables"), tree, force=True)
    with open(os.path.join(directory, "structure.json"), "w") as f:
        json.dump(record, f, indent=1, sort_keys=True)
    return directory


def load_shrunk(directory: str, module: Any = None, *, key: jax.Array | None = None) -> Restored:
    """Rebuild the smaller model from ``directory`` and restore its variables (``module``
    as in :func:`rebuild`; NNX params come back as an ``nnx.State``)."""
    with open(os.path.join(directory, "structure.json")) as f:
        record = json.load(f)
    model = rebuild(record, module)
    x = jnp.zeros(tuple(record["input"]["shape"]), record["input"]["dtype"])
    params, ms = model.init(jax.random.key(0) if key is None else key, x)
    return Restored(model, *restore_variables(directory, params, ms), record)


def restore_variables(directory: str, params: Any, model_state: Any) -> tuple[Any, Any]:
    """Restore :func:`save_shrunk`'s variables into fresh ones (an ``nnx.State`` in place)."""
    import orbax.checkpoint as ocp

    target = {"params": pure_params(params), "model_state": _pure_state(model_state)}
    target = {k: v for k, v in target.items() if k == "params" or jax.tree.leaves(v)}
    with ocp.StandardCheckpointer() as ck:
        got = ck.restore(os.path.join(os.path.abspath(directory), "variables"), jax.tree.map(
            lambda a: jax.ShapeDtypeStruct(np.shape(a), jnp.result_type(a)), target))
    if isinstance(params, nnx.State):
        nnx.replace_by_pure_dict(params, got["params"])
        if "model_state" in got:
            nnx.replace_by_pure_dict(model_state, got["model_state"])
        return params, model_state
    return got["params"], got.get("model_state", model_state)


__all__ = ["FORMAT", "Resized", "ResizedTrain", "Restored", "load_shrunk", "rebuild",
           "resize_nnx", "restore_variables", "save_shrunk", "structure_record"]
