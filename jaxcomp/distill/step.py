"""One jitted teacher/student step combining a logit objective with feature
terms (FitNets hints, attention transfer, RKD, PKT, SP) on captured
intermediate activations, with learnable projections where widths differ.

The teacher is frozen: it runs in eval mode under ``stop_gradient`` inside the
step — or not at all, when the batch carries its cached outputs
(``teacher_logits`` and ``teacher_features/<path>``, see
:mod:`jaxcomp.distill.cache`). Temperature, α and every term's weight are read
from ``batch["loss_state"]``: changing them does not retrace, and the step can
be ``jax.vmap``-ed over them. The student's params go through any compression
``transform`` (pruning, quantization), exactly as in :mod:`jaxcomp.train.step`.

The train state is a :class:`jaxcomp.train.TrainState` whose ``params`` are
``{"student": ..., "proj": {term_name: {"kernel", "bias"}}}``.

Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> from jaxcomp.models import get_model
    >>> from jaxcomp.distill.step import FeatureTerm, distiller
    >>> s = get_model("mlp", input_shape=(6,), num_classes=3, features=(8,))
    >>> t = get_model("mlp", input_shape=(6,), num_classes=3, features=(16,))
    >>> tv = t.init(jax.random.key(1), jnp.ones((1, 6)))
    >>> d = distiller(s, t, optax.adam(1e-2), method="kd",
    ...               features=[FeatureTerm("Dense_0", "Dense_0", "hint")])
    >>> state = d.init(jax.random.key(0), jnp.ones((1, 6)), tv)
    >>> state.params["proj"]["hint_0"]["kernel"].shape
    (8, 16)
    >>> batch = {"x": jnp.ones((4, 6)), "y": jnp.zeros(4, jnp.int32),
    ...          "loss_state": d.loss_state(temperature=4.0, alpha=0.5)}
    >>> state, m = d.step(state, batch, tv)
    >>> int(state.step), sorted(m)
    (1, ['accuracy', 'ce', 'distill', 'hint_0', 'loss'])
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxcomp.core.errors import ConfigError, check_choice, check_range
from jaxcomp.core.transform import Transform, identity
from jaxcomp.distill.attention import attention_transfer
from jaxcomp.distill.cache import FEATURE_PREFIX
from jaxcomp.distill.capture import capture, feature_shapes
from jaxcomp.distill.hint import check_projectable, hint_loss, init_projection, project
from jaxcomp.distill.logits import check_logits, hard_cross_entropy
from jaxcomp.distill.objective import METHODS, distill_term, loss_state
from jaxcomp.distill.relational import rkd_loss
from jaxcomp.distill.similarity import pkt_loss, sp_loss
from jaxcomp.flax.model import Model
from jaxcomp.train.state import TrainState
from jaxcomp.train.step import apply_step

FEATURE_LOSSES: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "hint": hint_loss,
    "at": attention_transfer,
    "rkd": rkd_loss,
    "pkt": pkt_loss,
    "sp": sp_loss,
}


class FeatureTerm(NamedTuple):
    """A feature loss between one student module's output and one teacher module's.

    ``student`` / ``teacher`` are module-path regexes that must each match exactly
    one module; ``loss`` is one of :data:`FEATURE_LOSSES`; ``name`` (default
    ``"<loss>_<i>"``) keys its weight in ``loss_state["features"]``;
    ``projection``: learn a dense / 1×1-conv projection when a hint's widths differ.
    """

    student: str
    teacher: str
    loss: str = "hint"
    name: str | None = None
    projection: bool = True


class Distiller(NamedTuple):
    """``init(key, x, teacher_vars, params=None, model_state=None) -> TrainState``;
    ``step(state, batch, teacher_vars) -> (state, metrics)`` (jitted);
    ``step_fn`` (un-jitted, for ``lax.scan`` / ``vmap``);
    ``loss_state(**numbers, features=None) -> dict`` of arrays."""

    init: Callable[..., TrainState]
    step: Callable[..., tuple[TrainState, dict[str, jax.Array]]]
    step_fn: Callable[..., tuple[TrainState, dict[str, jax.Array]]]
    loss_state: Callable[..., dict[str, Any]]
    terms: tuple[FeatureTerm, ...]


def _named_terms(features: Sequence[FeatureTerm]) -> tuple[FeatureTerm, ...]:
    out = []
    for i, t in enumerate(features):
        if not isinstance(t, FeatureTerm):
            t = FeatureTerm(*t)
        check_choice(f"distill.features[{i}].loss", t.loss, FEATURE_LOSSES)
        for side in ("student", "teacher"):
            rule = getattr(t, side)
            if not isinstance(rule, str) or rule.startswith("!"):
                raise ConfigError(f"distill.features[{i}].{side}: got {rule!r}; expected a "
                                  "module-path regex (one module)")
        out.append(t._replace(name=t.name or f"{t.loss}_{i}"))
    names = [t.name for t in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"distill.features: duplicate term names {names}")
    return tuple(out)


def _pick(feats: Mapping[str, Any], rule: str, what: str) -> str:
    hits = [p for p in feats if re.fullmatch(rule, p)]
    if len(hits) != 1:
        raise ConfigError(f"{what}: rule {rule!r} must match exactly one module; it matches "
                          f"{hits}")
    return hits[0]


def distiller(student: Model, teacher: Model, tx: optax.GradientTransformation, *,
              method: str = "kd", features: Sequence[FeatureTerm] = (),
              transform: Transform | None = None, donate: bool = True) -> Distiller:
    """Build the teacher/student step.

    Args:
      student, teacher: linen or NNX model handles (``jaxcomp.flax``).
      tx: the student's optimizer (also trains the projections).
      method: the logit objective (:data:`jaxcomp.distill.objective.METHODS`;
        ``"ce"`` for feature terms plus cross-entropy only).
      features: feature terms; captured through ``jaxcomp.flax.intercept_*``.
      transform: a compression transform on the student's params.
      donate: donate the state's buffers to the jitted step.
    """
    check_choice("distill.method", method, METHODS)
    terms = _named_terms(features)
    transform = transform or identity()
    s_rules = [t.student for t in terms]
    t_rules = [t.teacher for t in terms]
    s_fm = capture(student, s_rules, what="distill.features (student)") if terms else None
    t_fm = capture(teacher, t_rules, what="distill.features (teacher)") if terms else None

    def student_fwd(params, ms, x, train, rng):
        if s_fm is None:
            out, new_ms = student.apply(params, ms, x, train=train, rng=rng)
            return out, {}, new_ms
        return s_fm.apply(params, ms, x, train=train, rng=rng)

    def teacher_fwd(teacher_vars, x):
        if teacher_vars is None:
            raise ConfigError("distill: no teacher_vars and no cached 'teacher_logits' in the "
                              "batch")
        tp, ts = teacher_vars
        if t_fm is None:
            return teacher.apply(tp, ts, x, train=False)[0], {}
        out, feats, _ = t_fm.apply(tp, ts, x, train=False)
        return out, feats

    def make_loss_state(features: Mapping[str, float] | None = None, **numbers):
        weights = {t.name: 1.0 for t in terms}
        for k, v in (features or {}).items():
            check_choice("distill.features weight name", k, weights)
            check_range(f"distill.features.{k}", v, 0.0, None)
            weights[k] = v
        ls = loss_state(**numbers)
        ls["features"] = {k: jnp.asarray(v, jnp.float32) for k, v in weights.items()}
        return ls

    def init(key, x, teacher_vars, params=None, model_state=None):
        pkey, skey, rkey = jax.random.split(key, 3)
        if params is None:
            params, ms = student.init(pkey, x)
            model_state = ms if model_state is None else model_state
        else:  # own copies: the step donates its state, and params may be the teacher's too
            params = jax.tree.map(jnp.array, params)
        proj = {}
        if terms:
            tp, ts = teacher_vars
            s_out, s_shapes = feature_shapes(s_fm, params, model_state or {}, x)
            t_out, t_shapes = feature_shapes(t_fm, tp, ts, x)
            check_logits(jax.ShapeDtypeStruct(s_out, jnp.float32),
                         jax.ShapeDtypeStruct(t_out, jnp.float32))
            keys = jax.random.split(skey, len(terms))
            for k, t in zip(keys, terms, strict=True):
                sp = _pick(s_shapes, t.student, f"distill.features.{t.name}.student")
                tpth = _pick(t_shapes, t.teacher, f"distill.features.{t.name}.teacher")
                ss, tsh = s_shapes[sp], t_shapes[tpth]
                if t.loss == "hint":
                    check_projectable(ss, tsh, student_path=sp, teacher_path=tpth,
                                      projection=t.projection)
                    if ss != tsh:
                        proj[t.name] = init_projection(k, ss, tsh)
                elif t.loss == "at" and (ss[:-1] != tsh[:-1] if len(ss) == 4 else ss != tsh):
                    raise ConfigError(
                        f"distill.features.{t.name}: attention transfer needs equal spatial "
                        f"sizes; student {sp!r} has shape {ss}, teacher {tpth!r} has {tsh}")
        all_params = {"student": params, "proj": proj}
        return TrainState(jnp.zeros((), jnp.int32), all_params, tx.init(all_params),
                          transform.init(params), model_state or {}, rkey)

    def step_fn(state: TrainState, batch: dict[str, Any], teacher_vars: Any = None):
        if "loss_state" not in batch:
            raise ConfigError("distill: the batch has no 'loss_state' (use "
                              "distiller.loss_state(...))")
        ls, x, y = batch["loss_state"], batch["x"], batch["y"]
        rng = jax.random.fold_in(state.key, state.step)
        if "teacher_logits" in batch:
            t_logits = batch["teacher_logits"]
            t_feats = {k[len(FEATURE_PREFIX):]: v for k, v in batch.items()
                       if k.startswith(FEATURE_PREFIX)}
        else:
            t_logits, t_feats = teacher_fwd(teacher_vars, x)
        t_logits, t_feats = jax.lax.stop_gradient((t_logits, t_feats))

        def objective(params):
            eff = transform.apply(params["student"], state.comp_state)
            logits, s_feats, new_ms = student_fwd(eff, state.model_state, x, True, rng)
            check_logits(logits, t_logits)
            ce = hard_cross_entropy(logits, y)
            dt = distill_term(method, logits, t_logits, y, ls)
            loss = ce if method == "ce" else ls["alpha"] * dt + (1 - ls["alpha"]) * ce
            aux = {"ce": ce, "distill": dt,
                   "accuracy": jnp.mean((jnp.argmax(logits, -1) == y).astype(jnp.float32))}
            for t in terms:
                sf = s_feats[_pick(s_feats, t.student, f"distill.features.{t.name}.student")]
                tf = t_feats[_pick(t_feats, t.teacher, f"distill.features.{t.name}.teacher")]
                if t.name in params["proj"]:
                    sf = project(params["proj"][t.name], sf)
                term = FEATURE_LOSSES[t.loss](sf, tf)
                aux[t.name] = term
                loss = loss + ls["features"][t.name] * term
            return loss, (new_ms, aux)

        (loss, (new_ms, aux)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
        params, opt_state, comp_state = apply_step(tx, transform, state, grads,
                                                   jax.random.fold_in(rng, 1), part="student")
        new = TrainState(state.step + 1, params, opt_state, comp_state, new_ms, state.key)
        return new, {"loss": loss, **aux}

    step = jax.jit(step_fn, donate_argnums=(0,) if donate else ())
    return Distiller(init, step, step_fn, make_loss_state, terms)
