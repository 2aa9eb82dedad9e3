"""Structured (channel / filter / neuron) masks ranked by L1 or L2 norm.

A structured mask zeroes whole output units: the kernel's output slice, its
bias, the following BatchNorm's scale and bias — every *producer* member of a
:class:`~jaxcomp.prune.groups.Group`. Coupled channels (a residual sum) share
one score: the norms of all the group's producer kernels, summed (L1) or
root-sum-squared (L2). Masks are computed with ``jnp`` ops only, so the
sparsity may be traced: ``jax.vmap`` over an array of sparsities gives one
mask per level in one call.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp.models import get_model
    >>> from jaxcomp.prune.groups import dependency_groups
    >>> from jaxcomp.prune.channels import channel_masks
    >>> model = get_model("mlp", input_shape=(8,), num_classes=3, features=(6, 4))
    >>> params, state = model.init(jax.random.key(0), jnp.ones((1, 8)))
    >>> graph = dependency_groups(model, params, state, jnp.ones((1, 8)))
    >>> masks = channel_masks(params, graph, 0.5)
    >>> [int(masks[f"Dense_{i}"]["bias"].sum()) for i in range(3)]
    [3, 2, 3]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcomp.core import paths as _paths
from jaxcomp.core.errors import ConfigError, check_choice, check_range
from jaxcomp.core.transform import Transform
from jaxcomp.prune.groups import DependencyGraph, Member

NORMS = ("l1", "l2")


def channel_view(leaf: jax.Array, member: Member, xp: Any = jnp) -> jax.Array:
    """``leaf`` reshaped to ``(rest, channels)``: the member's channel factor last
    (``xp=numpy`` for host arrays)."""
    sizes = [s for _, s in member.factors]
    shape = tuple(np.shape(leaf))
    shape = shape[:member.axis] + tuple(sizes) + shape[member.axis + 1:]
    x = xp.reshape(leaf, shape)
    x = xp.moveaxis(x, member.axis + member.position, -1)
    return xp.reshape(x, (-1, x.shape[-1]))


def _kernel_producers(graph: DependencyGraph, name: str) -> list[Member]:
    return [m for m in graph.groups[name].producers
            if len(graph.shapes[(m.collection, m.path)]) >= 2]


def group_scores(params: Any, graph: DependencyGraph, *, norm: str = "l1",
                 where: Any = None) -> dict[str, jax.Array]:
    """One score per channel of each selected group (higher = more important).

    Args:
      params: the model's params.
      graph: from :func:`~jaxcomp.prune.groups.dependency_groups`.
      norm: ``"l1"`` (sum of absolute values) or ``"l2"`` (Euclidean norm) of each
        channel's weights, over all the group's producer kernels.
      where: which groups (regex rules over group names; None = all).
    """
    check_choice("norm", norm, NORMS)
    leaves = _paths.path_dict(params)
    out = {}
    names = where if isinstance(where, list) else graph.select(where)
    for name in names:
        total = None
        for m in _kernel_producers(graph, name):
            v = channel_view(leaves[m.path], m).astype(jnp.float32)
            s = jnp.sum(jnp.abs(v), 0) if norm == "l1" else jnp.sum(v * v, 0)
            total = s if total is None else total + s
        out[name] = total if norm == "l1" else jnp.sqrt(total)
    return out


def keep_from_scores(scores: jax.Array, sparsity: Any) -> jax.Array:
    """Bool keep-vector: prune ``floor(sparsity * n)`` lowest-scoring channels (at
    least one channel is always kept). ``sparsity`` may be traced; ties break by index.

    Example:
        >>> import jax.numpy as jnp
        >>> keep_from_scores(jnp.array([3., 1., 2., 0.5]), 0.5).tolist()
        [True, False, True, False]
    """
    n = scores.shape[0]
    check_range("sparsity", sparsity, 0.0, 1.0, hi_open=True)
    k = jnp.clip(jnp.floor(jnp.asarray(sparsity, jnp.float32) * n + 1e-6), 0, n - 1)
    rank = jnp.argsort(jnp.argsort(scores, stable=True), stable=True)
    return rank >= k.astype(rank.dtype)


def masks_from_keep(params: Any, graph: DependencyGraph,
                    keep: Mapping[str, Any]) -> Any:
    """A mask tree (1 keep / 0 prune, each leaf's dtype) zeroing the producer slices
    of the channels ``keep[group]`` (a bool vector, possibly traced) leaves out."""
    leaves = _paths.path_dict(params)
    factors: dict[str, list] = {}
    for name, k in keep.items():
        if name not in graph.groups:
            from jaxcomp.core.errors import suggest

            raise ConfigError(f"keep: unknown group {name!r}{suggest(name, graph.groups)}; "
                              f"groups: {graph.names()}")
        g = graph.groups[name]
        if tuple(np.shape(k)) != (g.size,):
            raise ConfigError(f"keep[{name!r}]: got shape {tuple(np.shape(k))}; expected "
                              f"({g.size},)")
        for m in g.producers:
            if m.collection == "params":
                factors.setdefault(m.path, []).append((m, k))
    out = {}
    for path, leaf in leaves.items():
        mask = jnp.ones(np.shape(leaf), jnp.result_type(leaf))
        for m, k in factors.get(path, []):
            sizes = [s for _, s in m.factors]
            bshape = [1] * len(sizes)
            bshape[m.position] = sizes[m.position]
            factor = jnp.reshape(jnp.asarray(k, mask.dtype), bshape)
            factor = jnp.broadcast_to(factor, sizes).reshape(-1)
            shape = [1] * mask.ndim
            shape[m.axis] = mask.shape[m.axis]
            mask = mask * jnp.reshape(factor, shape)
        out[path] = mask
    return _paths.unflatten_like(params, out)


def channel_masks(params: Any, graph: DependencyGraph, sparsity: Any, *, norm: str = "l1",
                  where: Any = None, jit: bool = True) -> Any:
    """Masks pruning ``sparsity`` of the channels of every selected group by norm.

    Args:
      params: the model's params.
      graph: the model's dependency groups.
      sparsity: a fraction in ``[0, 1)`` (may be a traced scalar), or a dict
        ``{group name: fraction}``.
      norm: ``"l1"`` or ``"l2"``.
      where: which groups to prune (regex over group names); others are kept whole.
      jit: compile the computation as one function (much faster than op-by-op on CPU).

    Returns:
      A tree like ``params`` of 0/1 arrays.
    """
    check_choice("norm", norm, NORMS)
    selected = graph.select(where)
    if isinstance(sparsity, Mapping):
        unknown = [k for k in sparsity if k not in selected]
        if unknown:
            raise ConfigError(f"sparsity: groups {unknown} are not selected; selected: "
                              f"{selected}")
        for k, v in sparsity.items():
            check_range(f"sparsity[{k!r}]", v, 0.0, 1.0, hi_open=True)
    else:
        check_range("sparsity", sparsity, 0.0, 1.0, hi_open=True)

    def build(params, sparsity):
        scores = group_scores(params, graph, norm=norm, where=selected)
        if isinstance(sparsity, Mapping):
            keep = {n: keep_from_scores(scores[n], s) for n, s in sparsity.items()}
        else:
            keep = {n: keep_from_scores(s, sparsity) for n, s in scores.items()}
        return masks_from_keep(params, graph, keep)

    return jax.jit(build)(params, sparsity) if jit else build(params, sparsity)


def keep_from_masks(masks: Any, graph: DependencyGraph) -> dict[str, np.ndarray]:
    """Concrete bool keep-vectors read back from a mask tree: a channel is kept if any
    of its producer kernel slices has a non-zero mask entry."""
    leaves = _paths.path_dict(masks)
    out = {}
    for name in graph.groups:
        keep = None
        for m in _kernel_producers(graph, name):
            if m.path not in leaves:
                raise ConfigError(f"masks: missing the leaf {m.path!r}")
            if tuple(np.shape(leaves[m.path])) != graph.shapes[("params", m.path)]:
                raise ConfigError(f"masks[{m.path!r}]: got shape {np.shape(leaves[m.path])}; "
                                  f"expected {graph.shapes[('params', m.path)]}")
            k = np.any(channel_view(np.asarray(leaves[m.path]), m, np) != 0, axis=0)
            keep = k if keep is None else keep | k
        out[name] = keep
    return out


def unit_mask(leaf: Any, sparsity: Any, *, axis: int = -1, norm: str = "l1",
              path: str = "leaf") -> jax.Array:
    """Mask of one tensor zeroing its lowest-norm slices along ``axis`` (no coupling).

    Example:
        >>> import jax.numpy as jnp
        >>> w = jnp.array([[1., -4., 0.5], [1., 4., 0.5]])
        >>> unit_mask(w, 0.34, axis=1).tolist()
        [[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]]
    """
    check_choice(f"{path}: norm", norm, NORMS)
    leaf = jnp.asarray(leaf)
    nd = leaf.ndim
    if not isinstance(axis, int) or not -nd <= axis < nd:
        raise ConfigError(f"{path}: channel axis {axis!r} out of range for shape "
                          f"{tuple(leaf.shape)}; allowed {-nd}..{nd - 1}")
    check_range(f"{path}: sparsity", sparsity, 0.0, 1.0, hi_open=True)
    x = jnp.moveaxis(leaf, axis, -1).reshape(-1, leaf.shape[axis]).astype(jnp.float32)
    score = jnp.sum(jnp.abs(x), 0) if norm == "l1" else jnp.sqrt(jnp.sum(x * x, 0))
    keep = keep_from_scores(score, sparsity).astype(leaf.dtype)
    shape = [1] * nd
    shape[axis] = leaf.shape[axis]
    return jnp.broadcast_to(keep.reshape(shape), leaf.shape)


def check_masks(params: Any, masks: Any) -> None:
    """Raise :class:`ConfigError` unless ``masks`` has ``params``' paths and shapes."""
    p, m = _paths.path_dict(params), _paths.path_dict(masks)
    missing = [k for k in p if k not in m]
    extra = [k for k in m if k not in p]
    if missing or extra:
        raise ConfigError(f"masks: paths differ from the params' (missing {missing[:5]}, "
                          f"unknown {extra[:5]})")
    for k, leaf in p.items():
        if tuple(np.shape(m[k])) != tuple(np.shape(leaf)):
            raise ConfigError(f"masks[{k!r}]: got shape {tuple(np.shape(m[k]))}; expected the "
                              f"parameter's shape {tuple(np.shape(leaf))}")


def apply_masks(params: Any, masks: Any) -> Any:
    """``params * masks`` leaf by leaf (shapes checked)."""
    check_masks(params, masks)
    return jax.tree.map(lambda p, m: p * jnp.asarray(m, jnp.result_type(p)), params, masks)


def channel_pruner(graph: DependencyGraph, sparsity: Any, *, norm: str = "l1",
                   where: Any = None) -> Transform:
    """One-shot structured pruning as a :class:`~jaxcomp.core.Transform`.

    ``init`` ranks the channels of the params it is given and stores the masks and
    the sparsity (an array, so a sweep can ``vmap`` over it); ``apply`` multiplies;
    ``update`` keeps the masks (pruned units get zero gradients and stay pruned).
    Fine-tune with it, then :func:`jaxcomp.prune.surgery.shrink` with
    ``masks=state["masks"]`` to remove the units physically.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxcomp.models import get_model
        >>> from jaxcomp.prune.groups import dependency_groups
        >>> m = get_model("nnx_cnn", input_shape=(8, 8, 1), num_classes=2, channels=8)  # NNX
        >>> x = jnp.ones((1, 8, 8, 1))
        >>> p, s = m.init(jax.random.key(0), x)
        >>> t = channel_pruner(dependency_groups(m, p, s, x), 0.5)
        >>> k = t.apply(p, t.init(p))["conv1"]["kernel"]
        >>> int((k == 0).all(axis=(0, 1, 2)).sum())   # 4 of the residual branch's 8 filters
        4
    """
    check_choice("norm", norm, NORMS)
    graph.select(where)  # fail early on a rule that matches no group
    check_range("sparsity", sparsity, 0.0, 1.0, hi_open=True)

    def init(params):
        s = jnp.array(sparsity, jnp.float32)  # its own buffer: a train step donates state
        return {"masks": channel_masks(params, graph, s, norm=norm, where=where, jit=False),
                "sparsity": s}

    def apply(params, state):
        return jax.tree.map(lambda p, m: p * m.astype(jnp.result_type(p)), params,
                            state["masks"])

    def update(params, state, *, step, grads=None, key=None):
        del params, step, grads, key
        return state

    return Transform(init, apply, update)


def count_params(tree: Any) -> int:
    """Total number of array elements in ``tree``."""
    return int(sum(math.prod(np.shape(x)) for x in jax.tree.leaves(tree)))


__all__ = ["NORMS", "apply_masks", "channel_masks", "channel_pruner", "channel_view", "check_masks",
           "count_params", "group_scores", "keep_from_masks", "keep_from_scores",
           "masks_from_keep", "unit_mask"]
