"""Dynamic sparse training: SET (Mocanu et al. 2018) and RigL (Evci et al. 2020).

At the first gated step the masks are drawn at random at the target
sparsity (layer-wise or ERK). Every ``every`` steps until ``end`` each leaf
drops the ``k = round(f(t)·active)`` active weights of smallest magnitude and
regrows ``k`` inactive ones — at random (SET) or those with the largest
gradient magnitude (RigL) — so the sparsity stays exact. ``f(t)`` decays from
``drop_fraction`` to 0 by a cosine. Use it through
:func:`jaxcomp.prune.masked_optimizer`, which starts regrown weights at zero,
resets their optimizer moments and passes dense gradients.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp.prune.dst import rigl
    >>> params = {"w": jnp.arange(1., 9.).reshape(2, 4)}
    >>> t = rigl(0.5, every=1, end=10)
    >>> s = t.update(params, t.init(params), step=0, grads=params, key=jax.random.key(0))
    >>> int(s["masks"]["w"].sum())
    4
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxcomp.core import guards, paths, schedules
from jaxcomp.core.errors import ConfigError, check_choice, check_number
from jaxcomp.core.select import Where, selected_paths
from jaxcomp.core.transform import Transform
from jaxcomp.prune import masks as M
from jaxcomp.prune.pruner import apply_checked, check_pruner_state
from jaxcomp.prune.select_k import count_for, smallest_k_groups


def dynamic_sparse(method: str, sparsity: Any = 0.9, *, drop_fraction: Any = 0.3,
                   begin: Any = 0, every: Any = 100, end: Any = 10_000,
                   allocation: str = "layerwise", where: Where = None) -> Transform:
    """A SET (``method="set"``) or RigL (``"rigl"``) transform.

    Args:
      sparsity: the constant target sparsity in ``[0, 1)``.
      drop_fraction: initial fraction of active weights replaced per update (cosine-decayed).
      begin: the step the random sparse masks are drawn (default 0).
      every: Δt between drop/regrow updates.
      end: no drop/regrow after this step.
      allocation: ``"layerwise"`` or ``"erk"``.
      where: the leaves to sparsify.
    """
    check_choice("prune.method", method, ("set", "rigl"))
    check_choice("prune.allocation", allocation, ("layerwise", "erk"))
    M.check_sparsity("prune.sparsity", sparsity)
    check_number("prune.drop_fraction", drop_fraction, 0.0, 1.0)
    check_number("prune.frequency (every)", every, 1, None, integer=True)

    gate = schedules.gate(begin, end, every)  # refuses an end before the begin

    def init(params):
        guards.require_leaves(f"prune.{method}.init", params)
        pd = paths.path_dict(params)
        sel = selected_paths(params, where)
        guards.check_finite_leaves(f"prune.{method}.init", ((p, pd[p]) for p in sel))
        return {"masks": {p: jnp.ones(pd[p].shape, bool) for p in sel},
                "sparsity": jnp.array(sparsity, jnp.float32),
                "drop": schedules.to_arrays(schedules.cosine(drop_fraction, 0.0, begin, end)),
                "gate": jax.tree.map(jnp.copy, gate)}  # own buffers (a step donates them)

    def update(params, state, *, step, grads=None, key=None):
        if key is None:
            raise ConfigError(f"prune.method={method!r}: update needs key= (a PRNG key)")
        if method == "rigl" and grads is None:
            raise ConfigError("prune.method='rigl': update needs grads= (dense gradients)")
        check_pruner_state(f"prune.{method}.update", params, state,
                           ("masks", "sparsity", "drop", "gate"))
        return _update(method, allocation, params, state, jnp.asarray(step, jnp.int32), grads,
                       key)

    return Transform(init, apply_checked, update)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _update(method, allocation, params, state, step, grads, key):
    g = state["gate"]
    first = step == g["begin"]
    later = (step > g["begin"]) & (step <= g["end"]) & \
        (jnp.mod(step - g["begin"], g["every"]) == 0)
    k_init, k_grow = jax.random.split(key)
    masks = lax.cond(first, lambda: _random_masks(allocation, state, k_init),
                     lambda: state["masks"])
    masks = lax.cond(later, lambda: _drop_grow(method, params, grads, masks, state, step,
                                               k_grow), lambda: masks)
    return {**state, "masks": masks}


def _random_masks(allocation, state, key):
    names = list(state["masks"])
    shapes = {p: state["masks"][p].shape for p in names}
    if allocation == "erk":
        per = M.erk_sparsities(shapes, jnp.clip(state["sparsity"], 0.0, 0.999999))
    else:
        per = {p: state["sparsity"] for p in names}
    keys = jax.random.split(key, len(names))
    scores = [jax.random.uniform(k, shapes[p]) for k, p in zip(keys, names, strict=True)]
    z = jnp.stack([count_for(per[p], scores[i].size) for i, p in enumerate(names)])
    pr = smallest_k_groups(scores, tuple(range(len(names))), z)
    return {p: ~m for p, m in zip(names, pr, strict=True)}


def _drop_grow(method, params, grads, masks, state, step, key):
    pd = paths.path_dict(params)
    names = list(masks)
    frac = state["drop"](step)
    groups = tuple(range(len(names)))
    k = jnp.stack([jnp.round(frac * jnp.sum(masks[p], dtype=jnp.float32)).astype(jnp.int32)
                   for p in names])
    # drop: the k active weights of smallest magnitude
    drop_scores = [jnp.where(masks[p], jnp.abs(pd[p]).astype(jnp.float32), jnp.inf)
                   for p in names]
    dropped = smallest_k_groups(drop_scores, groups, k)
    after = {p: masks[p] & ~d for p, d in zip(names, dropped, strict=True)}
    # grow: the k inactive weights with the largest gradient magnitude (RigL) or at random
    if method == "rigl":
        gd = paths.path_dict(grads)
        grow = [jnp.abs(gd[p]).astype(jnp.float32) for p in names]
    else:
        keys = jax.random.split(key, len(names))
        grow = [jax.random.uniform(kk, masks[p].shape) for kk, p in zip(keys, names,
                                                                         strict=True)]
    neg = [jnp.where(after[p], jnp.inf, -s) for p, s in zip(names, grow, strict=True)]
    grown = smallest_k_groups(neg, groups, k)
    return {p: after[p] | gm for p, gm in zip(names, grown, strict=True)}


def set_(sparsity: Any = 0.9, **kwargs: Any) -> Transform:
    """SET: random regrowth (see :func:`dynamic_sparse`)."""
    return dynamic_sparse("set", sparsity, **kwargs)


def rigl(sparsity: Any = 0.9, **kwargs: Any) -> Transform:
    """RigL: gradient-magnitude regrowth (see :func:`dynamic_sparse`)."""
    return dynamic_sparse("rigl", sparsity, **kwargs)
