"""Mask primitives: exact top-k per leaf or across leaves, ERK allocation, N:M and blocks.

Every mask is a bool array (``True`` = keep). Counts are exact: a leaf of
``n`` elements pruned to sparsity ``s`` has exactly ``round(s·n)`` zeros
(layer-wise), and a global mask has ``round(s·N)`` zeros over all selected
leaves; ties are broken by position (earlier leaves, lower row-major index,
are pruned first). ``sparsity`` may be a traced array, so one compiled
function serves a whole sweep and can be ``jax.vmap``-ed.

Example:
    >>> import jax.numpy as jnp
    >>> from jaxcomp.prune.masks import topk_mask
    >>> topk_mask(jnp.array([0.1, 0.4, 0.3, 0.2]), 0.5).tolist()
    [False, True, True, False]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcomp.core.errors import ConfigError, check_number
from jaxcomp.prune.select_k import count_for, smallest_k


def check_sparsity(what: str, sparsity: Any) -> Any:
    """Raise :class:`ConfigError` unless ``0 <= sparsity < 1`` (traced values pass)."""
    return check_number(what, sparsity, 0.0, 1.0, hi_open=True)


def topk_mask(scores: jax.Array, sparsity: Any) -> jax.Array:
    """Keep the largest ``n - round(sparsity·n)`` scores of one array (exact count).

    Args:
      scores: any float array (e.g. ``|w|``).
      sparsity: fraction to prune, in ``[0, 1)``; may be traced.

    Returns:
      A bool mask of ``scores.shape`` with exactly ``round(sparsity·n)`` ``False``.

    Example:
        >>> import jax.numpy as jnp
        >>> int((~topk_mask(jnp.ones((4, 5)), 0.3)).sum())   # ties: by index
        6
    """
    check_sparsity("sparsity", sparsity)
    (pruned,) = smallest_k([scores], count_for(sparsity, scores.size))
    return ~pruned


def keep_largest(scores: Sequence[jax.Array], k: Any) -> list[jax.Array]:
    """Masks keeping exactly the ``k`` largest scores over all arrays together."""
    n = sum(int(s.size) for s in scores)
    check_number("k", k, 0, n, integer=True)
    n = sum(int(s.size) for s in scores)
    z = jnp.clip(n - jnp.asarray(k, jnp.int32), 0, n)
    return [~m for m in smallest_k(list(scores), z)]


def _normalize(x: jax.Array, how: str | None) -> jax.Array:
    if how is None or how == "none":
        return x
    a = jnp.abs(x)
    if how == "l1":
        d = jnp.sum(a)
    elif how == "l2":
        d = jnp.sqrt(jnp.sum(a * a))
    elif how == "max":
        d = jnp.max(a)
    elif how == "mean":
        d = jnp.mean(a)
    else:
        raise ConfigError(f"normalize: got {how!r}; allowed: None, 'l1', 'l2', 'max', 'mean'")
    return x / jnp.maximum(d, jnp.finfo(jnp.float32).tiny)


def global_masks(scores_by_path: Mapping[str, jax.Array], sparsity: Any, *,
                 normalize: str | None = None) -> dict[str, jax.Array]:
    """One threshold across all leaves: exactly ``round(s·N)`` zeros in total.

    Args:
      scores_by_path: ``{path: scores}`` (order fixes the tie-breaking).
      sparsity: fraction of all ``N`` selected elements to prune, in ``[0, 1)``.
      normalize: divide each leaf's scores by its ``"l1"``, ``"l2"``, ``"max"``
        or ``"mean"`` magnitude first (so large layers do not dominate), or ``None``.

    Returns:
      ``{path: bool mask}``.

    Example:
        >>> import jax.numpy as jnp
        >>> m = global_masks({"a": jnp.array([1., 5.]), "b": jnp.array([2., 3., 4.])}, 0.4)
        >>> m["a"].tolist(), m["b"].tolist()
        ([False, True], [False, True, True])
    """
    check_sparsity("sparsity", sparsity)
    if not scores_by_path:
        raise ConfigError("global_masks: no leaves given (the selection matched nothing)")
    names = list(scores_by_path)
    scores = [_normalize(jnp.asarray(scores_by_path[p], jnp.float32), normalize) for p in names]
    n = sum(int(s.size) for s in scores)
    pruned = smallest_k(scores, count_for(sparsity, n))
    return {p: ~m for p, m in zip(names, pruned, strict=True)}


def layerwise_masks(scores_by_path: Mapping[str, jax.Array],
                    sparsity: Any | Mapping[str, Any]) -> dict[str, jax.Array]:
    """Each leaf pruned to its own sparsity (one number for all, or ``{path: s}``).

    Example:
        >>> import jax.numpy as jnp
        >>> m = layerwise_masks({"a": jnp.arange(4.), "b": jnp.arange(2.)}, {"a": .5, "b": 0})
        >>> m["a"].tolist(), m["b"].tolist()
        ([False, False, True, True], [True, True])
    """
    out = {}
    for p, s in scores_by_path.items():
        sp = sparsity[p] if isinstance(sparsity, Mapping) else sparsity
        check_sparsity(f"sparsity[{p}]", sp)
        out[p] = topk_mask(s, sp)
    return out


def erk_sparsities(shapes: Mapping[str, Sequence[int]], sparsity: Any, *,
                   power: float = 1.0) -> dict[str, jax.Array]:
    """Erdős–Rényi-Kernel per-leaf sparsities whose total equals ``sparsity``.

    Density of a leaf is proportional to ``sum(shape) / prod(shape)`` (Evci et
    al. 2020); leaves whose density would exceed 1 are kept dense and the
    rest rescaled. Works with a traced ``sparsity`` (a fixed number of
    re-balancing rounds, one per leaf).

    Example:
        >>> e = erk_sparsities({"a": (100, 100), "b": (100, 10)}, 0.5)
        >>> n = {"a": 10000, "b": 1000}
        >>> round(sum(float(e[p]) * n[p] for p in e) / 11000, 4)
        0.5
    """
    check_sparsity("sparsity", sparsity)
    check_number("power", power, 0.0, None)
    names = list(shapes)
    size = np.array([math.prod(shapes[p]) for p in names], np.float32)
    raw = np.array([sum(shapes[p]) / math.prod(shapes[p]) for p in names], np.float32) ** power
    total_keep = (1.0 - jnp.asarray(sparsity, jnp.float32)) * size.sum()
    dense = jnp.zeros(len(names), bool)
    eps = jnp.zeros((), jnp.float32)
    for _ in range(len(names)):
        free_budget = total_keep - jnp.sum(jnp.where(dense, size, 0.0))
        denom = jnp.sum(jnp.where(dense, 0.0, raw * size))
        eps = free_budget / jnp.maximum(denom, 1e-12)
        dense = dense | (eps * raw > 1.0)
    density = jnp.where(dense, 1.0, jnp.clip(eps * raw, 0.0, 1.0))
    return {p: 1.0 - density[i] for i, p in enumerate(names)}


def erk_masks(scores_by_path: Mapping[str, jax.Array], sparsity: Any, *,
              power: float = 1.0) -> dict[str, jax.Array]:
    """Layer-wise top-k masks at the ERK per-leaf sparsities (see :func:`erk_sparsities`)."""
    sp = erk_sparsities({p: s.shape for p, s in scores_by_path.items()}, sparsity, power=power)
    return {p: topk_mask(s, jnp.clip(sp[p], 0.0, 1.0 - 1e-7)) for p, s in scores_by_path.items()}


def nm_mask(scores: jax.Array, n: int, m: int, *, axis: int = -1,
            path: str = "scores") -> jax.Array:
    """Keep the ``n`` largest of every ``m`` consecutive elements along ``axis`` (N:M).

    Ties go to the lower index. ``m`` must divide the axis and ``0 < n <= m``.

    Example:
        >>> import jax.numpy as jnp
        >>> nm_mask(jnp.array([[1., 4., 3., 2.], [5., 5., 0., 0.]]), 2, 4).astype(int).tolist()
        [[0, 1, 1, 0], [1, 1, 0, 0]]
    """
    check_nm(path, scores.shape, n, m, axis)
    x = jnp.moveaxis(scores, axis, -1)
    g = x.reshape(*x.shape[:-1], x.shape[-1] // m, m)
    a = g[..., :, None]            # element i
    b = g[..., None, :]            # element j
    idx = jnp.arange(m)
    beats = (b > a) | ((b == a) & (idx[None, :] < idx[:, None]))
    rank = jnp.sum(beats, axis=-1)  # how many in the group outrank element i
    keep = (rank < n).reshape(x.shape)
    return jnp.moveaxis(keep, -1, axis)


def check_nm(path: str, shape: Sequence[int], n: int, m: int, axis: int) -> None:
    """ConfigError unless ``0 < n <= m`` and ``m`` divides ``shape[axis]``."""
    if not (isinstance(n, int | np.integer) and isinstance(m, int | np.integer)) or m < 1 \
            or n < 1 or n > m:
        raise ConfigError(f"{path}: N:M = {n}:{m}; need integers with 0 < N <= M")
    if not -len(shape) <= axis < len(shape):
        raise ConfigError(f"{path}: axis {axis} out of range for shape {tuple(shape)}; "
                          f"allowed range [{-len(shape)}, {len(shape) - 1}]")
    if shape[axis] % m:
        raise ConfigError(f"{path}: M={m} does not divide axis {axis} of shape "
                          f"{tuple(shape)} (size {shape[axis]}); allowed M: divisors of "
                          f"{shape[axis]}")


def check_block(path: str, shape: Sequence[int], block: Sequence[int]) -> None:
    """ConfigError unless ``block`` divides the trailing dims of ``shape``."""
    block = tuple(block)
    if not block or len(block) > len(shape) or any(int(b) < 1 for b in block):
        raise ConfigError(f"{path}: block {block} does not fit shape {tuple(shape)}")
    tail = tuple(shape[len(shape) - len(block):])
    if any(d % b for d, b in zip(tail, block, strict=True)):
        raise ConfigError(f"{path}: block {block} does not divide the trailing dims {tail} of "
                          f"shape {tuple(shape)}")


def block_scores(scores: jax.Array, block: Sequence[int], *, path: str = "scores",
                 reduce: str = "mean") -> jax.Array:
    """Scores of each block over the trailing dims (``mean``, ``sum``, ``max`` or ``l2``)."""
    check_block(path, scores.shape, block)
    lead = scores.shape[:scores.ndim - len(block)]
    tail = scores.shape[scores.ndim - len(block):]
    split = []
    for d, b in zip(tail, block, strict=True):
        split += [d // b, b]
    x = scores.reshape(*lead, *split)
    axes = tuple(len(lead) + 2 * i + 1 for i in range(len(block)))
    if reduce == "mean":
        return jnp.mean(x, axis=axes)
    if reduce == "sum":
        return jnp.sum(x, axis=axes)
    if reduce == "max":
        return jnp.max(x, axis=axes)
    if reduce == "l2":
        return jnp.sqrt(jnp.sum(x * x, axis=axes))
    raise ConfigError(f"block reduce: got {reduce!r}; allowed: 'mean', 'sum', 'max', 'l2'")


def expand_blocks(mask: jax.Array, block: Sequence[int]) -> jax.Array:
    """Repeat a per-block mask back to element resolution over the trailing dims."""
    lead = mask.ndim - len(block)
    for i, b in enumerate(block):
        mask = jnp.repeat(mask, b, axis=lead + i)
    return mask


def block_mask(scores: jax.Array, sparsity: Any, block: Sequence[int], *,
               path: str = "scores", reduce: str = "mean") -> jax.Array:
    """Prune whole blocks (e.g. 4×4) of the trailing dims: exactly ``round(s·B)`` of ``B`` blocks.

    Example:
        >>> import jax.numpy as jnp
        >>> s = jnp.array([[1., 1., 9., 9.], [1., 1., 9., 9.]])
        >>> block_mask(s, 0.5, (2, 2)).astype(int).tolist()
        [[0, 0, 1, 1], [0, 0, 1, 1]]
    """
    return expand_blocks(topk_mask(block_scores(scores, block, path=path, reduce=reduce),
                                   sparsity), tuple(block))


def check_masks(params_by_path: Mapping[str, Any], masks: Mapping[str, Any]) -> None:
    """ConfigError if a mask's path is unknown or its shape differs from its parameter."""
    for p, m in masks.items():
        if p not in params_by_path:
            raise ConfigError(f"mask {p!r}: no parameter at that path; available: "
                              f"{list(params_by_path)[:10]}")
        ps, ms = tuple(np.shape(params_by_path[p])), tuple(np.shape(m))
        if ps != ms:
            raise ConfigError(f"mask {p!r}: shape {ms} differs from the parameter's {ps}")


def apply_masks(params: Any, masks: Mapping[str, jax.Array]) -> Any:
    """``params`` with each masked leaf multiplied by its mask (others unchanged).

    Example:
        >>> import jax.numpy as jnp
        >>> apply_masks({"w": jnp.ones(3)}, {"w": jnp.array([True, False, True])})["w"].tolist()
        [1.0, 0.0, 1.0]
    """
    from jaxcomp.core import paths

    check_masks(paths.path_dict(params), masks)
    return paths.map_with_path(
        lambda p, x: jnp.where(masks[p], x, jnp.zeros((), x.dtype)) if p in masks else x,
        params)


def sparsity_of(masks: Mapping[str, jax.Array]) -> jax.Array:
    """The fraction of ``False`` over all masks."""
    n = sum(int(m.size) for m in masks.values())
    if not n:
        raise ConfigError(f"sparsity_of: masks is empty ({len(masks)} masks, 0 elements); "
                          "expected {path: bool array}")
    z = sum(jnp.sum(~m.astype(bool), dtype=jnp.int32) for m in masks.values())
    return z / n
