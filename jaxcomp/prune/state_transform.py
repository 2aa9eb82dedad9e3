"""Pruning inside the engine: the pruner's state is the compression state.

:func:`pruning_transform` turns a pruner (:func:`jaxcomp.prune.pruner`, SET, RigL)
into the :class:`~jaxcomp.core.transform.Transform` a run trains with, so masks,
schedule and gate live in the train state's ``comp_state`` beside every other
family's state; :func:`pruning_optimizer` wraps the run's optimizer with the
generic :func:`~jaxcomp.prune.optax_wrapper.masked_updates`, which reads the masks
from there. :func:`jaxcomp.train.train_step_fn` runs, per step: gradients at the
current params, the transform's ``update`` (new masks from those params and the
dense gradients), then the optimizer with the new masks (pruned weights become
exactly ``0.0``). The numbers are :func:`~jaxcomp.prune.masked_optimizer`'s: same
masks at the same steps, same keys (the pruner's key is ``fold_in(key(seed),
step)``), same updates.

The forward pass sees the params with pruned weights at zero and a straight-through
gradient (the gradients the pruner and the optimizer see are the dense ones: RigL's
regrowth needs them). A train state holds its params that way already:
:func:`~jaxcomp.train.create_state` and the training loops set pruned weights to
``0.0`` (the transform's ``project``), and the optimizer keeps them at exactly
``0.0`` from step to step, so the train step's forward uses the params as they are
(``train_apply``), with no mask pass. ``apply`` (evaluation, export) masks. A state
whose params were replaced by hand is projected again by
:func:`jaxcomp.train.projected` (or built with ``create_state``); under
:func:`jaxcomp.core.checked` the train step checks it.

Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> from jaxcomp.prune import magnitude
    >>> from jaxcomp.train import create_state, make_train_step
    >>> from jaxcomp.models import get_model
    >>> model = get_model("mlp", input_shape=(4,), num_classes=2, features=(8,))
    >>> params, ms = model.init(jax.random.key(0), jnp.ones((1, 4)))
    >>> t = pruning_transform(magnitude(0.5))
    >>> tx = pruning_optimizer(optax.adam(1e-2), t)
    >>> state = create_state(params, ms, tx, key=jax.random.key(1), transform=t)
    >>> step = make_train_step(model, tx, t)
    >>> state, _ = step(state, {"x": jnp.ones((8, 4)), "y": jnp.zeros(8, jnp.int32)})
    >>> k = state.params["Dense_0"]["kernel"]
    >>> bool((k == 0).sum() == k.size // 2), sorted(state.comp_state)
    (True, ['key', 'pruner'])
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from jax import lax

from jaxcomp.core import guards, paths
from jaxcomp.core.checked import check_traced_zero
from jaxcomp.core.errors import ConfigError
from jaxcomp.core.transform import Transform
from jaxcomp.prune.optax_wrapper import _gate_open, check_pruner, check_seed, masked_updates


class PruningTransform(Transform):
    """A :func:`pruning_transform` whose pruner may regrow weights (SET, RigL)."""

    __slots__ = ()
    never_regrows = False


class ShrinkingPruningTransform(PruningTransform):
    """A :func:`pruning_transform` whose pruner's masks only ever shrink."""

    __slots__ = ()
    never_regrows = True


def pruning_transform(pruner: Transform, *, seed: int = 0) -> PruningTransform:
    """The compression transform whose state is ``pruner``'s (``{"pruner", "key"}``).

    Args:
      pruner: a pruning transform (:func:`jaxcomp.prune.pruner`, ``magnitude``, SET, RigL...).
      seed: seeds the key passed to the pruner's ``update`` (random scores, SET regrowth),
        folded with the step.

    Returns:
      A transform: ``init`` runs the pruner's ``init``; ``update`` runs the pruner's
      ``update`` on the steps its gate opens (every step for accumulating scores);
      ``apply`` zeroes pruned weights with a straight-through (dense) gradient;
      ``project`` sets them to ``0.0`` (a train state's start) and ``train_apply`` is the
      params as they are (checked under :func:`jaxcomp.core.checked`). Train it with
      :func:`pruning_optimizer` (or :func:`~jaxcomp.prune.masked_updates`).
    """
    check_pruner("pruning_transform", pruner)
    seed = check_seed("pruning_transform", seed)

    def init(params):
        ps = pruner.init(params)
        if not isinstance(ps, dict) or not isinstance(ps.get("masks"), dict):
            raise ConfigError("pruning_transform: pruner= made "
                              f"{guards.describe_state(ps)}, which has no masks; expected a "
                              "pruning transform (jaxcomp.prune.magnitude(...), pruner, rigl, "
                              "set_, channel_pruner)")
        # the key is made per init: a train step donates its state, so a key shared
        # between inits would be deleted by the first run (the pruners' own states are
        # fresh per init too)
        return {"pruner": ps, "key": jax.random.key_data(jax.random.key(seed))}

    def check(what, state):
        if not (isinstance(state, dict) and set(state) == {"pruner", "key"}):
            raise ConfigError(f"{what}: got {guards.describe_state(state)} as state; expected "
                              "the {'pruner', 'key'} dict pruning_transform's init made")

    def apply(params, state):
        check("pruning_transform.apply", state)
        masks = state["pruner"]["masks"]
        return paths.map_with_path(
            lambda p, w: _zero_pruned(w, masks[p]) if p in masks else w, params)

    def project(params, state):
        check("pruning_transform.project", state)
        masks = state["pruner"]["masks"]
        return paths.map_with_path(
            lambda p, w: jnp.where(masks[p], w, jnp.zeros((), w.dtype)) if p in masks else w,
            params)

    def train_apply(params, state):
        check("pruning_transform.apply", state)
        masks = state["pruner"]["masks"]
        for p, w in paths.path_dict(params).items():
            if p in masks:
                check_traced_zero(f"pruning_transform: params {p!r} hold pruned weights "
                                  "that are not 0.0 (a train state's params must be "
                                  "projected: build the state with create_state or pass it "
                                  "through jaxcomp.train.projected)", w, masks[p])
        return params

    def update(params, state, *, step, grads=None, key=None):
        del key  # the pruner's key comes from the transform's seed and the step
        check("pruning_transform.update", state)
        ps, step = state["pruner"], jnp.asarray(step, jnp.int32)

        def run():
            k = jax.random.fold_in(jax.random.wrap_key_data(state["key"]), step)
            return pruner.update(params, ps, step=step, grads=grads, key=k)

        gate = _gate_open(ps, step)
        ps = run() if gate is None else lax.cond(gate, run, lambda: ps)
        return {"pruner": ps, "key": state["key"]}

    cls = ShrinkingPruningTransform if getattr(pruner, "never_regrows", False) \
        else PruningTransform
    return cls(init, apply, update, train_apply, project)


def _zero_pruned(w: jax.Array, mask: jax.Array) -> jax.Array:
    """``w`` with pruned entries at exactly ``+0.0``; the gradient passes unmasked."""
    return w - lax.stop_gradient(w - jnp.where(mask, w, jnp.zeros((), w.dtype)))


def pruning_optimizer(tx: optax.GradientTransformation, transform: PruningTransform, *,
                      reset_moments: bool = True, prefix: str = ""
                      ) -> optax.GradientTransformationExtraArgs:
    """``tx`` wrapped by :func:`~jaxcomp.prune.masked_updates` for ``transform``'s masks
    (``prefix``: where the pruned params sit in the optimized tree, e.g. ``"student"``)."""
    if not isinstance(transform, PruningTransform):
        raise ConfigError(f"pruning_optimizer: transform is a {type(transform).__name__}; "
                          "expected the transform jaxcomp.prune.pruning_transform made")
    return masked_updates(tx, never_regrows=transform.never_regrows,
                          reset_moments=reset_moments, prefix=prefix)
