"""Channel dependency groups, derived by tracing the model's jaxpr.

Structured pruning must remove coupled channels together: a Dense layer's
output neurons together with its bias and the next layer's input rows; a
conv's filters with the following BatchNorm's scale, bias and statistics; in a
residual block, every tensor added on the identity path. :func:`dependency_groups`
finds these groups for *any* model — linen, NNX or a plain function — by
tracing ``model.apply`` to a jaxpr and propagating, axis by axis, which tensor
axes must share one channel index (a union-find over "axis nodes"):

* elementwise ops and broadcasts join the axes they line up;
* ``dot_general`` / ``conv_general_dilated`` join the input's feature axis with
  the kernel's contracting axis; the output feature axis is the kernel's (a
  depthwise conv passes its input's channels through);
* ``reshape`` keeps axes as factor lists, so a flatten of ``(H, W, C)`` into a
  Dense layer's rows couples ``C`` with every ``C``-th row;
* anything that is unsafe to shrink — the model's inputs and outputs, axes a
  reduction runs over, concatenations, slices, gathers, unknown primitives —
  is *blocked*, and a group touching a blocked axis is never pruned.

A group is a set of coupled ``(collection, path, axis)`` members with at least
one *producer* (a kernel whose last axis is the channel); it is named after its
first producer's path.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp.models import get_model
    >>> from jaxcomp.prune.groups import dependency_groups
    >>> model = get_model("lenet5", input_shape=(28, 28, 1), num_classes=10)
    >>> x = jnp.ones((1, 28, 28, 1))
    >>> params, state = model.init(jax.random.key(0), x)
    >>> graph = dependency_groups(model, params, state, x)
    >>> {name: g.size for name, g in graph.groups.items()}
    {'Conv_0/kernel': 6, 'Conv_1/kernel': 16, 'Dense_0/kernel': 120, 'Dense_1/kernel': 84}
    >>> [(m.path, m.axis, m.role) for m in graph.groups["Conv_0/kernel"].members]
    [('Conv_0/bias', 0, 'out'), ('Conv_0/kernel', 3, 'out'), ('Conv_1/kernel', 2, 'in')]

    The second conv's filters reach the first Dense layer through the flatten, so its
    group holds that layer's rows (every 16th one per filter):

    >>> [(m.path, m.axis, m.role) for m in graph.groups["Conv_1/kernel"].members]
    [('Conv_1/bias', 0, 'out'), ('Conv_1/kernel', 3, 'out'), ('Dense_0/kernel', 0, 'in')]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcomp.core import paths as _paths
from jaxcomp.core.errors import ConfigError
from jaxcomp.prune.channel_flow import (  # noqa: F401  (surgery replays the analysis)
    Desc,
    Frame,
    _Nodes,
    analyze,
    sub_jaxpr,
)

# ----------------------------------------------------------------------------- the graph


@dataclasses.dataclass(frozen=True)
class Member:
    """One tensor axis in a group. ``factors`` is the axis's layout (major to minor) as
    ``(group name or None, size)`` pairs; the group's channel is factor ``position``."""

    collection: str  # "params" or "state"
    path: str
    axis: int
    role: str  # "out" (a producer slice: kernel output, bias, norm scale), "in", "stat"
    factors: tuple[tuple[str | None, int], ...]
    position: int


@dataclasses.dataclass(frozen=True)
class Group:
    """Coupled channels: pruning channel ``i`` removes slice ``i`` of every member."""

    name: str
    size: int
    members: tuple[Member, ...]

    @property
    def producers(self) -> tuple[Member, ...]:
        """Members that produce the channel (kernels' output slices, biases, scales)."""
        return tuple(m for m in self.members if m.role == "out")


@dataclasses.dataclass
class DependencyGraph:
    """The prunable groups of a model, plus the per-leaf axis layouts."""

    groups: dict[str, Group]
    layouts: dict[tuple[str, str], tuple[tuple[tuple[str | None, int], ...], ...]]
    shapes: dict[tuple[str, str], tuple[int, ...]]

    def names(self) -> list[str]:
        return list(self.groups)

    def select(self, where: Any = None) -> list[str]:
        """Group names chosen by ``where`` (regex rules over group names, a predicate
        ``(name, group) -> bool`` or None for all) — a rule matching no group is an error."""
        if where is None:
            return self.names()
        from jaxcomp.core.select import select as _select

        return [n for n, s in _select(dict(self.groups), where).items() if s] \
            if not callable(where) else [n for n, g in self.groups.items() if where(n, g)]


def _role(collection: str, ndim: int, axis: int) -> str:
    if collection == "state":
        return "stat"
    return "out" if ndim < 2 or axis == ndim - 1 else "in"


def model_fn(model: Any, *, train: bool = False) -> Callable:
    """``(params, model_state, x) -> outputs`` for a :class:`jaxcomp.flax.Model` or a function."""
    if hasattr(model, "apply") and hasattr(model, "init"):
        return lambda p, s, x: model.apply(p, s, x, train=train)[0]
    if callable(model):
        return model
    raise ConfigError(f"model: got {type(model).__name__}; expected a jaxcomp Model or a "
                      "function (params, model_state, x) -> outputs")


def _abstract(tree: Any) -> Any:
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), jnp.result_type(a)), tree)


def trace(model: Any, params: Any, model_state: Any, x: Any):
    """The model's jaxpr with (params, model_state, x) flattened as inputs, and the
    number of param and state leaves."""
    fn = model_fn(model)
    jaxpr = jax.make_jaxpr(fn)(_abstract(params), _abstract(model_state), _abstract(x))
    return jaxpr, len(jax.tree.leaves(params)), len(jax.tree.leaves(model_state))


def _analyze_model(jaxpr, params, model_state, nodes: _Nodes):
    leaf_descs = {}
    in_descs = []
    for coll, tree in (("params", params), ("state", model_state)):
        for path, leaf in _paths.flatten(tree):
            d = nodes.fresh(np.shape(leaf))
            leaf_descs[(coll, path)] = d
            in_descs.append(d)
    n_in = len(jaxpr.jaxpr.invars)
    for v in jaxpr.jaxpr.invars[len(in_descs):n_in]:  # the model inputs
        in_descs.append(nodes.fresh(v.aval.shape, blocked=True))
    outs, frame = analyze(jaxpr, in_descs, nodes)
    for d in outs:
        for ax in d:
            nodes.block(ax)
    return leaf_descs, frame


def _name_classes(nodes: _Nodes, leaf_descs, shapes) -> dict[int, str]:
    """Root node -> group name, for every unblocked class that has a kernel producer."""
    names: dict[int, str] = {}
    for (coll, path), descs in leaf_descs.items():
        ndim = len(shapes[(coll, path)])
        for ax, d in enumerate(descs):
            for n in nodes.expand(d):
                r = nodes.find(n)
                if (coll == "params" and ndim >= 2 and _role(coll, ndim, ax) == "out"
                        and not nodes.blocked[r] and r not in names):
                    names[r] = path
    return names


def dependency_groups(model: Any, params: Any, model_state: Any, x: Any) -> DependencyGraph:
    """Trace ``model`` on an example input ``x`` and return its channel groups.

    Args:
      model: a :class:`jaxcomp.flax.Model` (linen or NNX) or a function
        ``(params, model_state, x) -> outputs``.
      params, model_state: the model's variables (only shapes are used).
      x: an example input batch (only its shape and dtype are used).

    Returns:
      A :class:`DependencyGraph` whose ``groups`` map names to :class:`Group`.
    """
    jaxpr, _, _ = trace(model, params, model_state, x)
    nodes = _Nodes()
    leaf_descs, _ = _analyze_model(jaxpr, params, model_state, nodes)
    shapes = {(c, p): tuple(np.shape(a)) for c, tree in (("params", params),
                                                         ("state", model_state))
              for p, a in _paths.flatten(tree)}
    names = _name_classes(nodes, leaf_descs, shapes)
    members: dict[str, list[Member]] = {n: [] for n in names.values()}
    layouts = {}
    for (coll, path), descs in leaf_descs.items():
        ndim = len(shapes[(coll, path)])
        lay = []
        for ax, d in enumerate(descs):
            fac = nodes.expand(d)
            layout = tuple((names.get(nodes.find(n)), nodes.size[n]) for n in fac)
            lay.append(layout)
            for pos, (gname, _) in enumerate(layout):
                if gname is not None:
                    members[gname].append(Member(coll, path, ax, _role(coll, ndim, ax),
                                                 layout, pos))
        layouts[(coll, path)] = tuple(lay)
    groups = {}
    for root, gname in names.items():
        ms = tuple(sorted(members[gname], key=lambda m: (m.collection, m.path, m.axis)))
        groups[gname] = Group(gname, nodes.size[root], ms)
    groups = dict(sorted(groups.items(), key=lambda kv: _natural(kv[0])))
    return DependencyGraph(groups, layouts, shapes)


def _natural(s: str) -> list:
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


__all__ = ["DependencyGraph", "Group", "Member", "analyze", "dependency_groups", "model_fn",
           "trace"]
