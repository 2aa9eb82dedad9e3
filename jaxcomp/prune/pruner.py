"""The pruning transform: score → allocate → structure, on a schedule, inside jit.

``pruner(...)`` returns a :class:`jaxcomp.Transform` whose state holds

* ``masks`` — ``{path: bool array}`` for the selected leaves (``True`` = keep);
* ``schedule`` — the sparsity schedule with its numbers as arrays (a sweep over
  sparsities compiles once and can be ``vmap``-ed), or ``{path: schedule}``
  for an explicit per-path map;
* ``gate`` — ``begin``, ``end``, ``every`` (int32): masks are recomputed at
  steps ``begin, begin+every, … ≤ end``, gated with ``lax.cond`` on the traced step;
* ``acc`` — the score accumulator (``taylor``, ``movement`` only).

``apply`` zeroes the pruned weights; ``update`` recomputes masks when the gate
is open. A plain number as sparsity (one-shot, no schedule) with a score that
needs no gradients or key (``magnitude``) prunes already in ``init``; a schedule
(a gradual one starting at 0 stays dense at ``init``), an explicit ``gate`` or
``random``/``snip``/``taylor``/``movement`` prune at the first gated ``update``.
By default pruning is monotone: a weight once pruned stays pruned (its score is
``-inf`` at the next update), as in Zhu & Gupta's algorithm.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp.prune.pruner import magnitude
    >>> params = {"Dense_0": {"kernel": jnp.arange(1., 9.).reshape(2, 4), "bias": jnp.ones(4)}}
    >>> t = magnitude(0.5)                          # one-shot: pruned already at init
    >>> t.apply(params, t.init(params))["Dense_0"]["kernel"].tolist()
    [[0.0, 0.0, 0.0, 0.0], [5.0, 6.0, 7.0, 8.0]]
    >>> from jaxcomp.core.schedules import polynomial
    >>> g = magnitude(polynomial(0.0, 0.5, begin=0, end=4, frequency=2))  # gradual
    >>> bool(g.init(params)["masks"]["Dense_0/kernel"].all())   # dense until updated
    True
    >>> s = g.update(params, g.init(params), step=4)
    >>> g.apply(params, s)["Dense_0"]["kernel"].tolist()
    [[0.0, 0.0, 0.0, 0.0], [5.0, 6.0, 7.0, 8.0]]
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxcomp.core import guards, paths, schedules
from jaxcomp.core.errors import ConfigError, check_choice, check_number
from jaxcomp.core.select import Where, resolve_rules, selected_paths
from jaxcomp.core.transform import Transform
from jaxcomp.prune import masks as M
from jaxcomp.prune import scores as S
from jaxcomp.prune._args import check_args, check_pruner_state, check_traced_targets
from jaxcomp.prune.select_k import count_for, smallest_k, smallest_k_groups

ALLOCATIONS = ("layerwise", "global", "erk")
STRUCTURES = ("unstructured", "n:m", "block")

Sparsity = Any  # number | Schedule | {rule: number | Schedule}


def _schedule_numbers(s: schedules.Schedule) -> list[tuple[str, Any]]:
    if isinstance(s, schedules.Constant):
        return [("value", s.value)]
    if isinstance(s, schedules.OneShot):
        return [("value", s.value), ("before", s.before)]
    return [("init", s.init), ("final", s.final)]


def as_sparsity_schedule(x: Any, what: str = "sparsity") -> schedules.Schedule:
    """A number becomes a one-shot schedule at step 0; schedules pass (values checked)."""
    if not isinstance(x, schedules.Schedule):
        M.check_sparsity(what, x)
    s = x if isinstance(x, schedules.Schedule) else schedules.one_shot(x, at=0)
    for name, v in _schedule_numbers(s):
        M.check_sparsity(f"{what}.{name}" if isinstance(x, schedules.Schedule) else what, v)
    return s


def default_gate(s: schedules.Schedule) -> tuple[Any, Any, Any]:
    """``(begin, end, every)`` of the mask updates a schedule implies."""
    if isinstance(s, schedules.OneShot):
        return s.at, s.at, 1
    if isinstance(s, schedules.Polynomial):
        return s.begin, s.end, s.frequency
    if isinstance(s, schedules.Cosine):
        return s.begin, s.end, 1
    return 0, 0, 1


def pruner(score: str = "magnitude", sparsity: Sparsity = 0.5, *,
           allocation: str = "layerwise", structure: str = "unstructured",
           where: Where = None, normalize: str | None = None,
           n: int = 2, m: int = 4, axis: int = -1, block: Sequence[int] = (4, 4),
           block_reduce: str = "mean", gate: tuple[Any, Any, Any] | None = None,
           monotone: bool = True, ema_decay: float = 0.9, erk_power: float = 1.0) -> Transform:
    """A pruning transform.

    Args:
      score: ``"magnitude"``, ``"random"``, ``"snip"``, ``"taylor"`` or ``"movement"``.
      sparsity: target fraction pruned: a number (one-shot at step 0 — with the default
        ``gate`` and a score needing no grads or key, i.e. ``magnitude``, the masks
        already reach it in ``init``), a schedule
        (``jaxcomp.schedules.polynomial(0, 0.9, begin, end, frequency=Δt)`` for
        Zhu & Gupta), or ``{path_rule: number | schedule}`` — an explicit per-path map
        (layer-wise; leaves no rule matches are not pruned).
      allocation: ``"layerwise"`` (each leaf to the same sparsity), ``"global"``
        (one threshold over all selected leaves; ``normalize`` per leaf optional)
        or ``"erk"`` (Erdős–Rényi-Kernel per-leaf densities).
      structure: ``"unstructured"``, ``"n:m"`` (``n`` of every ``m`` along ``axis``;
        the sparsity is then ``1 - n/m``) or ``"block"`` (whole ``block``-shaped tiles
        of the trailing dims, scored by ``block_reduce``).
      where: which leaves (see :mod:`jaxcomp.core.select`); default: all kernels.
      gate: ``(begin, end, every)`` of mask updates; default from the schedule.
      monotone: pruned weights stay pruned at later updates.
      ema_decay: decay of the ``taylor`` score's moving average.
      erk_power: exponent on the ERK raw densities.

    Returns:
      A :class:`~jaxcomp.Transform`.

    Raises:
      ConfigError: bad sparsity, allocation, structure, N:M or block for a leaf,
        or a selection that matches nothing (raised by ``init``).
    """
    check_choice("prune.method", score, S.SCORES)
    check_choice("prune.allocation", allocation, ALLOCATIONS)
    check_choice("prune.structure", structure, STRUCTURES)
    per_path = isinstance(sparsity, Mapping)
    if per_path:
        if not sparsity:
            raise ConfigError("prune.sparsity: the per-path map is empty")
        sched_map = {r: as_sparsity_schedule(v, f"prune.sparsity[{r!r}]")
                     for r, v in sparsity.items()}
        if allocation != "layerwise":
            raise ConfigError(f"prune.allocation: got {allocation!r} with a per-path sparsity "
                              "map; a map is its own allocation: use 'layerwise'")
        first = next(iter(sched_map.values()))
    else:
        first = as_sparsity_schedule(sparsity, "prune.sparsity")
    check_args(n, m, axis, block, block_reduce, normalize, gate, monotone, ema_decay, erk_power)
    # a plain number (or a map of numbers) with the default gate is a one-shot target at
    # step 0: scores that need neither gradients nor a key reach it already in ``init``
    prunes_at_init = (gate is None and score not in S.NEEDS_GRADS
                      and not S.get_score(score).needs_key
                      and not any(isinstance(v, schedules.Schedule) for v in
                                  (sparsity.values() if per_path else (sparsity,))))
    g_begin, g_end, g_every = gate if gate is not None else default_gate(first)
    check_number("prune.frequency", g_every, 1, None, integer=True)
    gate_arrays = schedules.gate(g_begin, g_end, g_every)  # refuses an end before the begin
    block = tuple(int(b) for b in block)

    def _selected(params):
        sel = selected_paths(params, where)
        if per_path:
            rules = resolve_rules({p: paths.path_dict(params)[p] for p in sel},
                                  list(sched_map.items()), default=None, what="prune.sparsity")
            sel = [p for p in sel if rules.get(p) is not None]
            if not sel:
                raise ConfigError("prune.sparsity: the per-path map matches no selected leaf")
        return sel

    def init(params):
        guards.require_leaves("prune.where: no leaf selected", params)
        pd = paths.path_dict(params)
        sel = _selected(params)
        if not sel:
            raise ConfigError(f"prune.where: no leaf selected (where={where!r}) among "
                              f"{len(pd)} leaves; nothing would be pruned")
        for p in sel:
            x = pd[p]
            if not jnp.issubdtype(x.dtype, jnp.floating):
                raise ConfigError(f"prune.where: {p!r} is not a float array ({x.dtype})")
            if structure == "n:m":
                M.check_nm(p, x.shape, n, m, axis)
            elif structure == "block":
                M.check_block(p, x.shape, block)
        # a NaN weight would score highest and be kept: refuse it
        guards.check_finite_leaves("prune.init", ((p, pd[p]) for p in sel))
        if per_path:
            rules = resolve_rules({p: pd[p] for p in sel}, list(sched_map.items()),
                                  default=None, what="prune.sparsity")
            sched = {p: schedules.to_arrays(rules[p]) for p in sel}
        else:
            sched = schedules.to_arrays(first)
        state = {"masks": {p: jnp.ones(pd[p].shape, bool) for p in sel},
                 "schedule": sched,
                 "gate": jax.tree.map(jnp.copy, gate_arrays)}  # own buffers (donated)
        if score in S.ACCUMULATES:
            state["acc"] = {p: jnp.zeros(pd[p].shape, jnp.float32) for p in sel}
        if prunes_at_init:
            state = _update(cfg, params, state, jnp.zeros((), jnp.int32), None, None)
        return state

    cfg = _Cfg(score, allocation, structure, normalize, int(n), int(m), int(axis), block,
               block_reduce, bool(monotone), float(ema_decay), float(erk_power))

    def update(params, state, *, step, grads=None, key=None):
        if score in S.NEEDS_GRADS and grads is None:
            raise ConfigError(f"prune.method={score!r}: update needs grads=")
        if S.get_score(score).needs_key and key is None:
            raise ConfigError(f"prune.method={score!r}: update needs key= (a PRNG key)")
        check_number("prune.update: step", step, 0, None, integer=True)
        keys = ("masks", "schedule", "gate") + (("acc",) if score in S.ACCUMULATES else ())
        check_pruner_state("prune.update", params, state, keys)
        return _update(cfg, params, state, jnp.asarray(step, jnp.int32), grads, key)

    return (ShrinkingPruner if monotone else Transform)(init, apply_checked, update)


def apply_checked(params: Any, state: Any) -> Any:
    """A pruner's ``apply``: the state and params are checked, then masked."""
    check_pruner_state("prune.apply", params, state)
    return _apply(params, state)


class ShrinkingPruner(Transform):
    """A pruner whose masks only ever shrink (``monotone=True``): a weight once pruned
    is never kept again. :func:`jaxcomp.prune.masked_optimizer` reads the marker and
    skips the work that only regrowth needs (the "kept before *and* after" mask and
    the reset of pruned weights' optimizer moments), which cannot change the
    trajectory of a pruner that never regrows."""

    __slots__ = ()
    never_regrows = True


@dataclasses.dataclass(frozen=True)
class _Cfg:
    score: str
    allocation: str
    structure: str
    normalize: str | None
    n: int
    m: int
    axis: int
    block: tuple[int, ...]
    block_reduce: str
    monotone: bool
    ema_decay: float
    erk_power: float


@jax.jit
def _apply(params, state):
    """The params with pruned weights set to exactly zero."""
    return _apply_masks(params, state["masks"])


# One compiled update per (config, shapes), shared by every pruner built with that config,
# so eager callers and sweeps over sparsity do not recompile. An outer jit inlines it.
@functools.partial(jax.jit, static_argnums=0)
def _update(cfg: _Cfg, params, state, step, grads, key):
    new = dict(state)
    if cfg.score in S.ACCUMULATES:
        pd = paths.path_dict(params)
        gd = paths.path_dict(grads)
        new["acc"] = {p: S.accumulate(cfg.score, a, pd[p], gd[p], cfg.ema_decay)
                      for p, a in state["acc"].items()}
    g = state["gate"]
    is_update = schedules.gate_open(g, step)
    def recompute():
        masks = _compute_masks(cfg, params, new, step, grads, key)
        if cfg.monotone:  # also when the schedule's sparsity falls: pruned stays pruned
            masks = {p: m & state["masks"][p] for p, m in masks.items()}
        return masks

    new["masks"] = lax.cond(is_update, recompute, lambda: state["masks"])
    return new


def _compute_masks(cfg: _Cfg, params, state, step, grads, key):
    pd = paths.path_dict(params)
    gd = paths.path_dict(grads) if grads is not None else {}
    old = state["masks"]
    names = list(old)
    keys = dict(zip(names, jax.random.split(key, len(names)), strict=True)) \
        if key is not None else {}
    sc = {}
    for p in names:
        w = jnp.where(old[p], pd[p], 0) if cfg.monotone else pd[p]
        s = S.score(cfg.score, w, gd.get(p), key=keys.get(p), acc=state.get("acc", {}).get(p),
                    path=p)
        sc[p] = jnp.where(old[p], s, -jnp.inf) if cfg.monotone else s
    sched = state["schedule"]
    per_path = isinstance(sched, dict)
    raw = {p: sched[p](step) for p in names} if per_path else sched(step)
    check_traced_targets(raw, {p: pd[p] for p in names})  # no-ops unless jc.core.checked
    sp = {p: _clip(v) for p, v in raw.items()} if per_path else _clip(raw)
    if cfg.structure == "n:m":
        return {p: M.nm_mask(s, cfg.n, cfg.m, axis=cfg.axis, path=p) for p, s in sc.items()}
    if cfg.structure == "block":
        bs = {}
        for p, s in sc.items():
            b = M.block_scores(jnp.where(jnp.isfinite(s), s, 0.0), cfg.block, path=p,
                               reduce=cfg.block_reduce)
            alive = M.block_scores(old[p].astype(jnp.float32), cfg.block, reduce="max") > 0
            bs[p] = jnp.where(alive, b, -jnp.inf) if cfg.monotone else b
        out = _by_allocation(cfg, bs, sp, per_path)
        return {p: M.expand_blocks(k, cfg.block) for p, k in out.items()}
    return _by_allocation(cfg, sc, sp, per_path)


def _by_allocation(cfg: _Cfg, sc, sp, per_path):
    names = list(sc)
    if per_path or cfg.allocation in ("layerwise", "erk"):
        if per_path:
            per = sp
        elif cfg.allocation == "erk":
            per = M.erk_sparsities({p: sc[p].shape for p in names},
                                   jnp.clip(sp, 0.0, 0.999999), power=cfg.erk_power)
        else:
            per = {p: sp for p in names}
        z = jnp.stack([count_for(per[p], sc[p].size) for p in names])
        pr = smallest_k_groups([sc[p] for p in names], tuple(range(len(names))), z)
    else:
        vals = [M._normalize(sc[p], cfg.normalize) if cfg.normalize else sc[p] for p in names]
        total = sum(int(v.size) for v in vals)
        pr = smallest_k(vals, count_for(sp, total))
    return {p: ~k for p, k in zip(names, pr, strict=True)}


def _clip(s):
    return jnp.clip(s, 0.0, 1.0)


def _apply_masks(params, masks):
    return paths.map_with_path(
        lambda p, x: jnp.where(masks[p], x, jnp.zeros((), x.dtype)) if p in masks else x,
        params)


def magnitude(sparsity: Sparsity = 0.5, **kwargs: Any) -> Transform:
    """Magnitude pruning (``|w|``); a number as ``sparsity`` prunes already in ``init``.

    A schedule or an explicit ``gate`` prunes at the gated ``update`` steps instead (a
    gradual schedule starting at 0 is dense at ``init``); see :func:`pruner`.

    Example:
        >>> import jax.numpy as jnp
        >>> t = magnitude(0.8)
        >>> w = {"w": jnp.arange(1., 11.).reshape(2, 5)}
        >>> t.apply(w, t.init(w))["w"].tolist()
        [[0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 9.0, 10.0]]
    """
    return pruner("magnitude", sparsity, **kwargs)


def random(sparsity: Sparsity = 0.5, **kwargs: Any) -> Transform:
    """Uniform random pruning; prunes at the first gated ``update`` (it needs ``key=``),
    not in ``init``; see :func:`pruner`."""
    return pruner("random", sparsity, **kwargs)


def snip(sparsity: Sparsity = 0.5, **kwargs: Any) -> Transform:
    """SNIP: ``|g·w|`` from the gradients of the step at the gate (default step 0); prunes
    at that ``update`` (it needs ``grads=``), not in ``init``."""
    return pruner("snip", sparsity, **kwargs)


def taylor(sparsity: Sparsity = 0.5, **kwargs: Any) -> Transform:
    """First-order Taylor saliency ``|g·w|`` (EMA over training steps); prunes at gated
    ``update`` steps, never in ``init``."""
    return pruner("taylor", sparsity, **kwargs)


def movement(sparsity: Sparsity = 0.5, **kwargs: Any) -> Transform:
    """Movement pruning: scores ``−Σ w·g`` accumulated over the steps; prunes at gated
    ``update`` steps, never in ``init``."""
    return pruner("movement", sparsity, **kwargs)


def masks_of(state: Any) -> dict[str, jax.Array]:
    """The ``{path: mask}`` dict inside a pruner's state."""
    return state["masks"]


def prune_once(t: Transform, params: Any, *, step: Any = None, grads: Any = None,
               key: Any = None) -> tuple[Any, Any]:
    """Run a pruner once outside training: ``(pruned_params, state)``.

    The masks are computed at ``step`` (default: the gate's ``begin``).

    Example:
        >>> import jax.numpy as jnp
        >>> p, s = prune_once(magnitude(0.5), {"w": jnp.array([[1., -3.], [2., 0.5]])})
        >>> p["w"].tolist()
        [[0.0, -3.0], [2.0, 0.0]]
    """
    if not all(callable(getattr(t, f, None)) for f in ("init", "apply", "update")):
        raise ConfigError(f"prune_once: t is a {type(t).__name__}; expected a jaxcomp pruning "
                          "Transform (jaxcomp.prune.magnitude(...), ...)")
    state = t.init(params)
    guards.require_state("prune_once", state, ("masks", "gate"), "a pruner's")
    if step is None:
        step = state["gate"]["begin"]
    state = t.update(params, state, step=step, grads=grads, key=key)
    return t.apply(params, state), state
