"""Physical removal of pruned channels ("surgery"): smaller params, smaller model state,
and a smaller model that runs.

Given the kept channels of each dependency group (from structured masks or
chosen directly), :func:`shrink` slices every member of every group — kernels
on both sides, biases, BatchNorm scales, biases and running statistics — and
returns a :class:`Shrunk` whose ``model`` is a real, smaller
:class:`jaxcomp.flax.Model`. Its ``apply`` re-runs the original model's
computation (its jaxpr, traced once per input shape) with the smaller arrays;
shape-carrying parameters (broadcast shapes, reshape sizes, the depthwise
group count) are rewritten from the same channel analysis that found the
groups, so after ``jax.jit`` XLA compiles a genuinely smaller network.

``Shrunk.record`` is a JSON-able structure record (per changed layer: path,
kind, new sizes; the model class): :func:`jaxcomp.prune.rebuild.rebuild` turns
it into a real Flax module of the new widths (linen or NNX) built from the
user's own model class, and :func:`~jaxcomp.prune.rebuild.save_shrunk` /
:func:`~jaxcomp.prune.rebuild.load_shrunk` save and restore it with orbax, so a
fresh process needs neither the full-size params nor the kept indices. For the
reference MLP, :func:`rebuild_linen` gives ``MLP(features=(150, 50))``.

The shrunk model computes what the masked model computes, as long as every
operation between a producer and its consumers maps a zero channel to zero
(ReLU, BatchNorm with its scale and bias masked, residual sums, pooling);
``shrink(..., verify=True)`` checks this on the example input.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp.models import get_model
    >>> from jaxcomp.prune.surgery import shrink
    >>> model = get_model("mlp", input_shape=(8,), num_classes=3, features=(6, 4))
    >>> x = jnp.ones((2, 8))
    >>> params, state = model.init(jax.random.key(0), x)
    >>> small = shrink(model, params, state, x, sparsity=0.5)
    >>> small.widths
    {'Dense_0/kernel': 3, 'Dense_1/kernel': 2}
    >>> small.params["Dense_1"]["kernel"].shape
    (3, 2)
    >>> small.model.apply(small.params, small.model_state, x)[0].shape
    (2, 3)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxcomp.core import paths as _paths
from jaxcomp.core.errors import ConfigError, suggest
from jaxcomp.flax.model import Model
from jaxcomp.prune import channels as _ch
from jaxcomp.prune import groups as _g


class Shrunk(NamedTuple):
    """The result of :func:`shrink`."""

    model: Model
    params: Any
    model_state: Any
    keep: dict[str, np.ndarray]  # kept channel indices per group
    widths: dict[str, int]  # new width of each group
    graph: _g.DependencyGraph
    # JSON-able structure record (jaxcomp.prune.rebuild): what a fresh process needs to
    # rebuild the smaller module from the original model class
    record: dict[str, Any] | None = None


def _indices(keep: Any, size: int, name: str) -> np.ndarray:
    k = np.asarray(keep)
    if k.dtype == bool:
        if k.shape != (size,):
            raise ConfigError(f"keep[{name!r}]: got a bool vector of shape {k.shape}; "
                              f"expected ({size},)")
        idx = np.nonzero(k)[0]
    else:
        idx = np.unique(k.astype(np.int64))
        if idx.size and (idx[0] < 0 or idx[-1] >= size):
            raise ConfigError(f"keep[{name!r}]: indices must lie in 0..{size - 1}")
    if idx.size == 0:
        raise ConfigError(f"keep[{name!r}]: keeps no channel; at least one must remain")
    return idx


def normalize_keep(graph: _g.DependencyGraph, keep: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """``{group: sorted kept indices}`` from bool vectors or index lists."""
    out = {}
    for name, k in keep.items():
        if name not in graph.groups:
            raise ConfigError(f"keep: unknown group {name!r}{suggest(name, graph.groups)}; "
                              f"groups: {graph.names()}")
        out[name] = _indices(k, graph.groups[name].size, name)
    return out


def _axis_index(layout, keep: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """Indices to take along one axis with this factor layout (None = keep all)."""
    if not any(g in keep for g, _ in layout):
        return None
    parts = [keep[g] if g in keep else np.arange(s) for g, s in layout]
    grids = np.meshgrid(*parts, indexing="ij")
    return np.ravel_multi_index([g.reshape(-1) for g in grids], [s for _, s in layout])


def slice_tree(tree: Any, collection: str, graph: _g.DependencyGraph,
               keep: Mapping[str, np.ndarray]) -> Any:
    """Take the kept channels along every grouped axis of every leaf of ``tree``."""
    def take(path, leaf):
        layouts = graph.layouts.get((collection, path))
        if layouts is None:
            return leaf
        for ax, layout in enumerate(layouts):
            idx = _axis_index(layout, keep)
            if idx is not None:
                leaf = np.take(np.asarray(leaf), idx, axis=ax)
        return jnp.asarray(leaf)

    return _paths.map_with_path(take, tree)


# ---------------------------------------------------------------- running the smaller model


class _Sizes:
    """New axis sizes for one traced jaxpr, given kept-channel counts per group."""

    def __init__(self, nodes: _g._Nodes, names: dict[int, str], counts: Mapping[str, int]):
        self.nodes, self.names, self.counts = nodes, names, counts

    def axis(self, desc) -> int:
        n = self.nodes
        return math.prod(self.counts.get(self.names.get(n.find(f), ""), n.size[f])
                         for f in n.expand(desc))

    def shape(self, descs) -> tuple[int, ...]:
        return tuple(self.axis(d) for d in descs)


def _fix_params(eqn, frame: _g.Frame, sizes: _Sizes, ins) -> dict:
    p = dict(eqn.params)
    name = eqn.primitive.name
    if len(eqn.outvars) == 1 and eqn.outvars[0] in frame.env:
        new = sizes.shape(frame.env[eqn.outvars[0]])
        if "shape" in p and isinstance(p["shape"], tuple):
            p["shape"] = new
        if "new_sizes" in p:
            p["new_sizes"] = new
    if name == "conv_general_dilated" and p["feature_group_count"] > 1:
        dn = p["dimension_numbers"]
        if p["feature_group_count"] == eqn.invars[0].aval.shape[dn.lhs_spec[1]]:  # depthwise
            p["feature_group_count"] = int(np.shape(ins[0])[dn.lhs_spec[1]])
    if name == "slice":
        old = eqn.invars[0].aval.shape
        p["limit_indices"] = tuple(np.shape(ins[0])[i] if b == old[i] else b
                                   for i, b in enumerate(p["limit_indices"]))
    return p


def _run(jaxpr, frame: _g.Frame, sizes: _Sizes, args) -> list:
    closed = jaxpr if isinstance(jaxpr, jax.extend.core.ClosedJaxpr) else None
    jx = closed.jaxpr if closed is not None else jaxpr
    env: dict[Any, Any] = {}
    for v, c in zip(jx.constvars, closed.consts if closed is not None else [], strict=True):
        env[v] = c
    for v, a in zip(jx.invars, args, strict=True):
        env[v] = a

    def read(v):
        return v.val if isinstance(v, jax.extend.core.Literal) else env[v]

    for i, eqn in enumerate(jx.eqns):
        ins = [read(v) for v in eqn.invars]
        if i in frame.children:
            outs = _run(_g.sub_jaxpr(eqn), frame.children[i], sizes, ins)
        else:
            outs = eqn.primitive.bind(*ins, **_fix_params(eqn, frame, sizes, ins))
            if not eqn.primitive.multiple_results:
                outs = [outs]
        for v, o in zip(eqn.outvars, outs, strict=True):
            env[v] = o
    return [read(v) for v in jx.outvars]


class _Program(NamedTuple):
    jaxpr: Any
    frame: _g.Frame
    sizes: _Sizes
    out_tree: Any


def _program(model: Model, abs_params, abs_state, x, train: bool, with_rng: bool,
             counts: Mapping[str, int]) -> _Program:
    def fn(p, s, x, rng):
        return model.apply(p, s, x, train=train, rng=rng if with_rng else None)

    rng_abs = jax.ShapeDtypeStruct((), jax.random.key(0).dtype) if with_rng else None
    jaxpr, out_shape = jax.make_jaxpr(fn, return_shape=True)(abs_params, abs_state,
                                                              _g._abstract(x), rng_abs)
    nodes = _g._Nodes()
    leaf_descs, in_descs = {}, []
    for coll, tree in (("params", abs_params), ("state", abs_state)):
        for path, leaf in _paths.flatten(tree):
            d = nodes.fresh(leaf.shape)
            leaf_descs[(coll, path)] = d
            in_descs.append(d)
    for v in jaxpr.jaxpr.invars[len(in_descs):]:
        in_descs.append(nodes.fresh(v.aval.shape, blocked=True))
    outs, frame = _g.analyze(jaxpr, in_descs, nodes)
    n_out = len(jax.tree.leaves(out_shape[0]))
    for d in outs[:n_out]:  # the model's outputs (not its updated state) are fixed
        for ax in d:
            nodes.block(ax)
    shapes = {k: tuple(v.aval.shape) for k, v in zip(leaf_descs, jaxpr.jaxpr.invars,
                                                     strict=False)}
    names = _g._name_classes(nodes, leaf_descs, shapes)
    missing = [g for g in counts if g not in names.values()]
    if missing:
        raise ConfigError(f"shrunk model: groups {missing} are not prunable when tracing "
                          f"with input {tuple(np.shape(x))} (train={train})")
    return _Program(jaxpr, frame, _Sizes(nodes, names, counts), jax.tree.structure(out_shape))


def shrunk_model(model: Model, params: Any, model_state: Any,
                 keep: Mapping[str, np.ndarray]) -> Model:
    """A :class:`Model` with the channels outside ``keep`` removed.

    ``params``/``model_state`` are the *original* (full-size) variables — only
    their shapes are used. ``apply`` takes the sliced variables; ``init`` builds
    the original model and slices it.
    """
    abs_p, abs_s = _g._abstract(params), _g._abstract(model_state)
    counts = {g: len(k) for g, k in keep.items()}
    cache: dict[tuple, _Program] = {}
    graph_holder: dict[str, _g.DependencyGraph] = {}

    def apply(p, s, x, *, train: bool = False, rng=None):
        key = (tuple(np.shape(x)), str(jnp.result_type(x)), bool(train), rng is not None)
        if key not in cache:
            prog = _program(model, abs_p, abs_s, x, train, rng is not None, counts)
            run = jax.jit(lambda args, prog=prog: _run(prog.jaxpr, prog.frame, prog.sizes, args))
            cache[key] = (prog, run)
        prog, run = cache[key]
        args = jax.tree.leaves(p) + jax.tree.leaves(s) + [x] + ([rng] if rng is not None
                                                               else [])
        outs = run(args)
        out, new_state = jax.tree.unflatten(prog.out_tree, outs)
        return out, (new_state if train else s)

    def init(key, x):
        full_p, full_s = jax.jit(model.init)(key, x)
        graph = graph_holder.get("g") or _g.dependency_groups(model, full_p, full_s, x)
        graph_holder["g"] = graph
        return slice_tree(full_p, "params", graph, keep), slice_tree(full_s, "state", graph,
                                                                      keep)

    return Model(init, apply, f"{model.name}_shrunk", model.module)


def shrink(model: Model, params: Any, model_state: Any, x: Any, *, keep: Mapping | None = None,
           masks: Any = None, sparsity: Any = None, norm: str = "l1", where: Any = None,
           graph: _g.DependencyGraph | None = None, verify: bool = True,
           atol: float = 1e-5) -> Shrunk:
    """Remove channels physically; exactly one of ``keep``, ``masks``, ``sparsity``.

    Args:
      model: the original model (linen or NNX :class:`Model`).
      params, model_state: its variables.
      x: an example input batch (traced for the dependency analysis and used by ``verify``).
      keep: ``{group name: bool vector or kept indices}``; groups not named keep everything.
      masks: a structured mask tree (e.g. from :func:`~jaxcomp.prune.channels.channel_masks`);
        a channel is kept if any producer kernel slice is unmasked.
      sparsity: prune this fraction of each selected group's channels by ``norm``.
      norm, where: ranking norm and group selection for ``sparsity``.
      graph: precomputed dependency groups (computed from ``x`` if None).
      verify: check that the shrunk model's output on ``x`` equals the masked model's
        (max abs difference ``<= atol`` relative to the output scale).

    Returns:
      A :class:`Shrunk` with the smaller model, params, model state and widths.
    """
    given = [a is not None for a in (keep, masks, sparsity)]
    if sum(given) != 1:
        raise ConfigError("shrink: pass exactly one of keep=, masks=, sparsity=")
    graph = graph or _g.dependency_groups(model, params, model_state, x)
    if masks is not None:
        _ch.check_masks(params, masks)
        keep = _ch.keep_from_masks(masks, graph)
    elif sparsity is not None:
        keep = _ch.keep_from_masks(_ch.channel_masks(params, graph, sparsity, norm=norm,
                                                     where=where), graph)
    keep = normalize_keep(graph, keep)
    keep = {g: k for g, k in keep.items() if len(k) < graph.groups[g].size}
    small_p = slice_tree(params, "params", graph, keep)
    small_s = slice_tree(model_state, "state", graph, keep)
    small = shrunk_model(model, params, model_state, keep)
    widths = {g: len(keep[g]) if g in keep else graph.groups[g].size for g in graph.groups}
    record = None
    if model.module is not None:
        from jaxcomp.prune.rebuild import structure_record

        record = structure_record(model, params, model_state, small_p, small_s, x)
    result = Shrunk(small, small_p, small_s, keep, widths, graph, record)
    if verify:
        diff, scale = masked_vs_shrunk(model, params, model_state, result, x)
        if not diff <= atol * max(1.0, scale):
            raise ConfigError(
                f"shrink: the shrunk model's outputs differ from the masked model's by {diff:.3g}"
                f" (output scale {scale:.3g}); the model applies an operation that maps a "
                "pruned (zero) channel to a non-zero value, so these groups cannot be removed "
                f"exactly: {sorted(keep)}")
    return result


def masked_params(params: Any, graph: _g.DependencyGraph,
                  keep: Mapping[str, np.ndarray]) -> Any:
    """``params`` with the producer slices of the removed channels zeroed."""
    bools = {}
    for g, idx in keep.items():
        b = np.zeros(graph.groups[g].size, bool)
        b[idx] = True
        bools[g] = b
    _ch.check_masks(params, params)
    return jax.jit(lambda p: _ch.apply_masks(p, _ch.masks_from_keep(p, graph, bools)))(params)


def masked_vs_shrunk(model: Model, params: Any, model_state: Any, small: Shrunk,
                     x: Any) -> tuple[float, float]:
    """(max abs difference, max abs output) between the masked and the shrunk model on ``x``."""
    mp = masked_params(params, small.graph, small.keep)
    a = jax.jit(lambda p, s, v: model.apply(p, s, v, train=False)[0])(mp, model_state, x)
    b = small.model.apply(small.params, small.model_state, x, train=False)[0]
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b))), float(np.max(np.abs(a)))


def rebuild_linen(model: Model, small: Shrunk) -> Model:
    """A plain linen module of the shrunk widths whose params are ``small.params``.

    The reference MLP / LeNet-300-100 comes back as ``MLP(features=(150, 50))``;
    any other linen model as :func:`jaxcomp.prune.rebuild.rebuild` of
    ``small.record`` (a :class:`~jaxcomp.prune.rebuild.Resized` module).

    Raises:
      ConfigError: the model is not a linen model, or has no structure record.
    """
    from jaxcomp.flax import from_linen
    from jaxcomp.models.mlp import MLP
    from jaxcomp.prune.rebuild import rebuild

    module = model.module
    if isinstance(module, MLP):
        feats = tuple(small.widths.get(f"Dense_{i}/kernel", f) for i, f in
                      enumerate(module.features))
        return from_linen(module.clone(features=feats), f"{model.name}_shrunk")
    if small.record is None or small.record["framework"] != "linen":
        raise ConfigError(f"rebuild_linen: model {model.name!r} is not a linen model with a "
                          "structure record; use jaxcomp.prune.rebuild.rebuild(small.record, "
                          "model) (linen or NNX)")
    return rebuild(small.record, model)


from jaxcomp.prune.rebuild import load_shrunk, rebuild, save_shrunk  # noqa: E402

__all__ = ["Shrunk", "load_shrunk", "masked_params", "masked_vs_shrunk", "normalize_keep",
           "rebuild", "rebuild_linen", "save_shrunk", "shrink", "shrunk_model", "slice_tree"]
