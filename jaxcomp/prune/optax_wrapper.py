"""An optax wrapper that keeps pruned weights at exactly zero, masks in the optimizer state.

``masked_optimizer(tx, pruner)`` is an ``optax.GradientTransformation``:

1. the pruner's ``update`` runs on the current params and dense gradients
   (gated on the step inside jit — mask recomputation costs nothing on other
   steps; SNIP at step 0 sees the initial weights), then the inner optimizer
   runs on the dense gradients;
2. the returned updates send every weight the new mask prunes to exactly
   ``0.0`` (``p + (-p) == 0`` in floating point); weights the mask newly
   regrows (dynamic sparse training) start from zero;
3. the inner optimizer's per-weight state (moments) is zero for every weight
   that is not kept both before and after the step, so pruned weights carry
   no stale momentum and regrown ones start fresh. A pruner that never regrows
   (:class:`~jaxcomp.prune.pruner.ShrinkingPruner`, the default ``monotone=True``)
   skips this: its pruned weights' updates are discarded for good, so their
   moments can never reach the parameters, and the per-step cost is one select
   per masked leaf.

The pruner's state (masks, schedule, step) lives in the optimizer state, so
one orbax checkpoint of a train state holds everything. The forward pass can
use the raw params (``jaxcomp.train.fit(..., tx=masked_optimizer(...))``):
they are exactly zero where masked after the first step. The gradients the
pruner sees are the dense ones (needed by RigL's regrowth).

Example:
    >>> import jax.numpy as jnp, optax
    >>> from jaxcomp.prune import magnitude
    >>> from jaxcomp.prune.optax_wrapper import masked_optimizer, get_masks
    >>> params = {"w": jnp.array([[1., -2.], [3., -4.]])}
    >>> tx = masked_optimizer(optax.sgd(0.5), magnitude(0.5))
    >>> state = tx.init(params)
    >>> u, state = tx.update({"w": jnp.ones((2, 2))}, state, params)
    >>> optax.apply_updates(params, u)["w"].tolist()
    [[0.0, 0.0], [2.5, -4.5]]
    >>> get_masks(state)["w"].tolist()
    [[False, False], [True, True]]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from jaxcomp.core import guards, paths, schedules
from jaxcomp.core.errors import ConfigError, check_bool
from jaxcomp.core.transform import Transform


class MaskedState(NamedTuple):
    """The wrapper's state: inner optimizer state, pruner state, step counter, key."""

    inner: Any
    prune: Any
    count: jax.Array
    key: jax.Array


def masked_optimizer(tx: optax.GradientTransformation, pruner: Transform, *,
                     seed: int = 0, reset_moments: bool = True
                     ) -> optax.GradientTransformation:
    """Wrap ``tx`` so the weights ``pruner`` masks stay exactly zero.

    Args:
      tx: any optax optimizer or chain.
      pruner: a pruning transform (:func:`jaxcomp.prune.pruner`, SET, RigL...).
      seed: seeds the key passed to the pruner's ``update`` (random scores, SET
        regrowth); the key is folded with the step, so it is explicit and reproducible.
      reset_moments: zero the inner optimizer's per-weight state of pruned/regrown weights.

    Returns:
      An ``optax.GradientTransformation`` whose ``update`` requires ``params``.
    """
    check_optax("masked_optimizer", tx)
    check_pruner("masked_optimizer", pruner)
    seed = check_seed("masked_optimizer", seed)

    def init(params):
        ps = pruner.init(params)
        if not (isinstance(ps, Mapping) and isinstance(ps.get("masks"), Mapping)):
            raise ConfigError("masked_optimizer: pruner= made "
                              f"{guards.describe_state(ps)}, which has no masks; expected a "
                              "pruning transform (jaxcomp.prune.magnitude(...), pruner, rigl, "
                              "set_, channel_pruner). To quantize, pass the transform to "
                              "fit(transform=...) instead")
        return MaskedState(tx.init(params), ps, jnp.zeros((), jnp.int32),
                           jax.random.key_data(jax.random.key(seed)))

    def update(grads, state, params=None):
        _check_update("masked_optimizer", params, state, MaskedState, "")
        guards.require_state("masked_optimizer.update", state.prune, ("masks",),
                             "a pruner's")
        old = state.prune["masks"]

        def run_pruner():
            key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.count)
            return pruner.update(params, state.prune, step=state.count, grads=grads, key=key)

        gate = _gate_open(state.prune, state.count)
        # masks are recomputed from the current params and gradients (before this step's
        # update), so the branch only reads buffers that exist anyway and the optimizer's
        # elementwise update stays fused; a pruner whose state only changes at gated steps
        # is not called on other steps; accumulating scores run every step
        prune = run_pruner() if gate is None else lax.cond(gate, run_pruner,
                                                           lambda: state.prune)
        u, inner = masked_update(tx, grads, state.inner, params, prune["masks"], old,
                                 never_regrows=getattr(pruner, "never_regrows", False),
                                 reset_moments=reset_moments)
        return u, MaskedState(inner, prune, state.count + 1, state.key)

    return optax.GradientTransformation(init, update)


class MaskedUpdatesState(NamedTuple):
    """:func:`masked_updates`' state: the inner optimizer's (the masks live elsewhere)."""

    inner: Any


class MaskedUpdates(optax.GradientTransformationExtraArgs):
    """The optimizer :func:`masked_updates` makes. After each of its updates every weight
    its masks prune is exactly ``0.0`` (``keeps_projection``), so a train step may skip the
    pruning transform's forward mask (:func:`jaxcomp.core.transform.forward_fn`); an
    optimizer wrapped around it is not marked and the step masks."""

    __slots__ = ()
    keeps_projection = True


def masked_updates(tx: optax.GradientTransformation, *, never_regrows: bool = False,
                   reset_moments: bool = True, prefix: str = ""
                   ) -> optax.GradientTransformationExtraArgs:
    """Wrap ``tx`` so weights pruned by the masks in the compression state stay zero.

    The generic half of pruning inside the engine: the pruner's state (masks, schedule)
    is the train state's ``comp_state`` (see :func:`jaxcomp.prune.pruning_transform`),
    and this wrapper reads the masks from it. Its ``update`` takes the extra arguments
    ``comp_state`` (this step's, after the transform's update) and ``prev_comp_state``
    (the step's input, for masks that may regrow), which
    :func:`jaxcomp.train.train_step_fn` passes; the masking is :func:`masked_optimizer`'s.

    Args:
      tx: any optax optimizer or chain.
      never_regrows: the masks only ever shrink (skips the "kept before and after" mask
        and the moment reset, which cannot change such a run).
      reset_moments: zero the inner state's per-weight leaves of pruned/regrown weights.
      prefix: where the masked params sit in the optimized tree (``"student"``: a mask
        ``Dense_0/kernel`` masks ``student/Dense_0/kernel``, as in
        :func:`jaxcomp.distill.distiller`); a mask path not found is a ConfigError.

    Example:
        >>> import jax.numpy as jnp, optax
        >>> from jaxcomp.prune import magnitude
        >>> t = magnitude(0.5)
        >>> params = {"w": jnp.array([[1., -2.], [3., -4.]])}
        >>> cs = t.update(params, t.init(params), step=0)          # masks in the comp state
        >>> tx = masked_updates(optax.sgd(0.5))
        >>> u, _ = tx.update({"w": jnp.ones((2, 2))}, tx.init(params), params,
        ...                  comp_state=cs, prev_comp_state=t.init(params))
        >>> optax.apply_updates(params, u)["w"].tolist()
        [[0.0, 0.0], [2.5, -4.5]]
    """
    check_bool("masked_updates: never_regrows", never_regrows)
    check_bool("masked_updates: reset_moments", reset_moments)
    if not isinstance(prefix, str):
        raise ConfigError(f"masked_updates: prefix got {prefix!r}; expected a str path")
    lead = prefix.strip("/") + "/" if prefix.strip("/") else ""
    check_optax("masked_updates", tx)
    inner_tx = optax.with_extra_args_support(tx)

    def init(params):
        return MaskedUpdatesState(inner_tx.init(params))

    def update(grads, state, params=None, *, comp_state=None, prev_comp_state=None, **extra):
        _check_update("masked_updates", params, state, MaskedUpdatesState, ", comp_state=...")
        new = _masks_in("comp_state", comp_state, params, lead)
        old = None if never_regrows else _masks_in("prev_comp_state", prev_comp_state,
                                                   params, lead)
        u, inner = masked_update(inner_tx, grads, state.inner, params, new, old,
                                 never_regrows=never_regrows, reset_moments=reset_moments,
                                 **extra)
        return u, MaskedUpdatesState(inner)

    return MaskedUpdates(init, update)


def check_optax(what: str, tx: Any) -> None:
    """ConfigError unless ``tx`` is an optax transformation (and not a jaxcomp Transform)."""
    if isinstance(tx, Transform) or not (callable(getattr(tx, "init", None))
                                         and callable(getattr(tx, "update", None))):
        raise ConfigError(f"{what}: tx is a {type(tx).__name__}; expected an optax "
                          "GradientTransformation (e.g. optax.adam(1e-3))")


def check_pruner(what: str, pruner: Any) -> None:
    """ConfigError unless ``pruner`` has a Transform's ``init``/``apply``/``update``."""
    if not all(callable(getattr(pruner, f, None)) for f in ("init", "apply", "update")):
        raise ConfigError(f"{what}: pruner is a {type(pruner).__name__}; expected a jaxcomp "
                          "pruning Transform (jaxcomp.prune.magnitude(...), pruner, rigl, ...)")


def check_seed(what: str, seed: Any) -> int:
    """``seed`` as an int; ConfigError for anything else (a bool included)."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ConfigError(f"{what}: seed got {seed!r}; expected an int")
    return int(seed)


def _check_update(what: str, params: Any, state: Any, cls: type, more: str) -> None:
    if params is None:
        raise ConfigError(f"{what}: update needs params (call "
                          f"tx.update(grads, opt_state, params{more}))")
    if not isinstance(state, cls):
        raise ConfigError(f"{what}.update: got {guards.describe_state(state)} as opt_state; "
                          f"expected the {cls.__name__} this optimizer's init made")


def _masks_in(name: str, comp_state: Any, params: Any, lead: str
              ) -> Mapping[str, jax.Array]:
    found = None if comp_state is None else find_prune_state(comp_state)
    if found is None:
        raise ConfigError(f"masked_updates: {name} holds no pruning masks (got "
                          f"{guards.describe_state(comp_state)}); train with the pruning "
                          "transform as the compression transform (jaxcomp.prune."
                          "pruning_transform) and pass comp_state=/prev_comp_state= to "
                          "update, as jaxcomp.train.train_step_fn does")
    masks = {lead + p: m for p, m in found["masks"].items()}
    have = paths.path_dict(params)
    missing = sorted(set(masks) - set(have))
    if missing:
        raise ConfigError(f"masked_updates: masks for {missing[:3]} name no parameter (with "
                          f"prefix={lead.rstrip('/')!r}); the params have "
                          f"{sorted(have)[:4]}... (a subtree's masks need prefix=, e.g. "
                          "'student')")
    return masks


def masked_update(tx: optax.GradientTransformation, grads: Any, inner: Any, params: Any,
                  new: Mapping[str, jax.Array], old: Mapping[str, jax.Array] | None, *,
                  never_regrows: bool, reset_moments: bool = True,
                  **extra_args: Any) -> tuple[Any, Any]:
    """``tx``'s update with the masks applied: ``(updates, inner state)``.

    A weight keeps its update only if ``old`` and ``new`` both keep it; every other
    masked weight gets the update ``-w`` (exactly ``0.0`` afterwards). With
    ``reset_moments`` and masks that may regrow, the inner state's per-weight leaves of
    those weights are zeroed. Masks that never regrow use ``new`` alone (``old`` may be
    ``None``): their pruned weights' updates are discarded for good. The one masking rule
    of :func:`masked_optimizer` and :func:`masked_updates`.
    """
    # kept before and after the step; masks that only shrink make that the new mask
    # (and the old masks need not outlive the branch, so XLA copies nothing)
    both = new if never_regrows else {p: old[p] & new[p] for p in new}
    u, inner = tx.update(grads, inner, params, **extra_args)
    # keep a weight's update only if it is kept before and after; else send it to 0
    u = jax.tree_util.tree_map_with_path(
        lambda kp, upd, w: _keep_or_zero(both, paths.path_to_str(kp), upd, w), u, params)
    if reset_moments and not never_regrows:
        # zero the per-weight optimizer state of every weight not kept throughout; an
        # elementwise select that fuses with the optimizer's own update (no branch)
        inner = _reset(tx, inner, params, both)
    return u, inner


def _gate_open(prune_state, step):
    if not isinstance(prune_state, dict) or "gate" not in prune_state or "acc" in prune_state:
        return None
    return schedules.gate_open(prune_state["gate"], step)


def _keep_or_zero(both, p, upd, w):
    if p not in both:
        return upd
    return jnp.where(both[p], upd, -w).astype(upd.dtype)


def _reset(tx, inner, params, keep):
    """Zero the inner state's per-parameter leaves wherever ``keep`` is False."""
    keep_tree = paths.map_with_path(lambda p, x: keep[p] if p in keep else None, params)

    def f(leaf, k):
        if k is None or not hasattr(leaf, "shape") or leaf.shape != k.shape:
            return leaf
        return jnp.where(k, leaf, jnp.zeros((), leaf.dtype))

    try:
        return optax.tree_utils.tree_map_params(tx, f, inner, keep_tree,
                                                is_leaf=lambda x: x is None)
    except Exception:  # an optimizer whose state optax cannot map: leave it alone
        return inner


def get_masks(opt_state: Any) -> dict[str, jax.Array]:
    """The ``{path: mask}`` dict from a :func:`masked_optimizer` state.

    The state is searched recursively, so this also works when the wrapper sits inside an
    ``optax.chain`` or a whole train state is given, and on the plain dicts and lists orbax
    restores when no target is given (a :class:`MaskedState` becomes
    ``{"inner", "prune", "count", "key"}``, a chain's tuple a list).

    Example:
        >>> import jax.numpy as jnp, optax
        >>> from jaxcomp.prune import magnitude
        >>> tx = masked_optimizer(optax.sgd(0.1), magnitude(0.5))
        >>> state = tx.init({"w": jnp.array([[1., -3.], [2., 0.5]])})
        >>> get_masks(state)["w"].tolist()
        [[False, True], [True, False]]
        >>> as_restored = {"inner": [], "prune": state.prune, "count": 0, "key": state.key}
        >>> get_masks([as_restored])["w"].tolist()
        [[False, True], [True, False]]
    """
    found = find_prune_state(opt_state)
    if found is None:
        raise ConfigError("get_masks: no masked_optimizer state found in this optimizer state "
                          f"(a {type(opt_state).__name__})")
    return found["masks"]


_FIELDS = frozenset(MaskedState._fields)


def _is_restored_masked_state(x: Any) -> bool:
    """A :class:`MaskedState` as orbax restores it without a target: a plain dict."""
    return (isinstance(x, Mapping) and _FIELDS <= set(x) and isinstance(x["prune"], Mapping)
            and "masks" in x["prune"])


def find_prune_state(opt_state: Any) -> Any:
    """The pruner state inside an optimizer (or train) state, or ``None``.

    Accepts the typed state and the plain-dict/list form orbax restores without a target.

    Example:
        >>> import jax.numpy as jnp, optax
        >>> from jaxcomp.prune import magnitude
        >>> tx = optax.chain(optax.clip(1.0), masked_optimizer(optax.sgd(0.1), magnitude(0.5)))
        >>> sorted(find_prune_state(tx.init({"w": jnp.ones((2, 2))})))
        ['gate', 'masks', 'schedule']
    """
    if isinstance(opt_state, MaskedState):
        return opt_state.prune
    if _is_restored_masked_state(opt_state):
        return opt_state["prune"]
    if isinstance(opt_state, Mapping) and isinstance(opt_state.get("masks"), Mapping):
        return opt_state  # a pruner's own state (a compression state holds it as is)
    if isinstance(opt_state, Mapping):
        children = opt_state.values()
    elif isinstance(opt_state, tuple | list):
        children = opt_state
    else:
        return None
    for s in children:
        r = find_prune_state(s)
        if r is not None:
            return r
    return None
