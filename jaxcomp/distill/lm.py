"""Distilling a GPT into a smaller GPT: logit KD plus hidden-state losses (Minitron).

The recovery step of Minitron (Muralidharan et al. 2024; Sreenivas et al. 2024): after
width or depth pruning, the pruned GPT (student) is trained to match the original
(teacher) on training text, with

* a forward KL between the teacher's and the student's next-byte distributions at
  temperature ``T`` (times ``T²``; :func:`jaxcomp.distill.logits.soft_target_kl`),
* optionally the byte cross-entropy on the data (``ce_weight``),
* optionally a loss between hidden states (``hidden_weight``): the residual stream after
  student block ``s`` against the teacher's after block ``layer_map[s]``, restricted to
  the teacher's residual ``channels`` that the student kept (width pruning keeps a
  subset of channels, so no learned projection is needed); each term is the squared
  error normalised by the teacher state's mean square, averaged over the mapped layers.

Everything is a ``loss_fn`` for the engine (:func:`jaxcomp.models.lm.train_lm`): the
teacher's params travel as the run's ``loss_state`` (a traced argument, never a
constant baked into the program), the teacher's forward pass runs inside the step under
``stop_gradient``, and the student is wrapped by :func:`with_hidden_states` so its step
sees its block outputs. :func:`distill_lm` ties it together.

Example:
    >>> import jax, optax
    >>> from jaxcomp.data.text import TextData
    >>> from jaxcomp.models import get_model
    >>> data = TextData.from_bytes(b"the cat sat on the mat. " * 100)
    >>> teacher = get_model("gpt", input_shape=(16,), num_layers=2, width=32, num_heads=2)
    >>> tp, _ = teacher.init(jax.random.key(0), None)
    >>> student = get_model("gpt", input_shape=(16,), num_layers=1, width=32, num_heads=2)
    >>> state, hist = distill_lm(student, teacher, tp, data, optax.adam(3e-3), steps=8,
    ...                          batch_size=4, context=16, hidden_weight=1.0,
    ...                          layer_map={0: 1})
    >>> sorted(k for k in hist[-1] if k.startswith("train_"))
    ['train_bpb', 'train_ce', 'train_hidden', 'train_kd', 'train_loss']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcomp.core.errors import ConfigError
from jaxcomp.data.text import TextData
from jaxcomp.distill.logits import check_temperature, check_weight, soft_target_kl
from jaxcomp.flax.model import Model
from jaxcomp.models import gpt_blocks as gb
from jaxcomp.models import gpt_target as _tgpt
from jaxcomp.models.gpt import GPT
from jaxcomp.models.lm import LN2, token_nll, train_lm
from jaxcomp.train.state import TrainState, create_state

LossFn = Callable[[Any, dict], tuple[jax.Array, dict]]


def states_forward(spec: gb.GPTSpec, params: Any, tokens: jax.Array
                   ) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    """``(logits, hidden)``: the GPT's logits and the residual stream after each block.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxcomp.models import get_model
        >>> m = get_model("gpt", input_shape=(8,), num_layers=2, width=16, num_heads=2)
        >>> p, ms = m.init(jax.random.key(0), None)
        >>> z, hs = states_forward(gb.gpt_spec(m), p, jnp.zeros((1, 8), jnp.int32))
        >>> z.shape, len(hs), hs[0].shape
        ((1, 8, 256), 2, (1, 8, 16))
    """
    states = gb.block_states(spec, params, tokens)
    return gb.head_forward(spec, gb.pure(params), states[-1]), tuple(states[1:])


def with_hidden_states(model: Model) -> Model:
    """``model`` (a library GPT) whose ``apply`` returns ``{"logits", "hidden"}``.

    The params are the GPT's own; use it as ``train_lm``'s ``train_model``.
    """
    spec = gb.gpt_spec(model)

    def apply(params, model_state, x, *, train: bool = False, rng=None):
        z, hidden = states_forward(spec, params, jnp.asarray(x, jnp.int32))
        return {"logits": z, "hidden": hidden}, model_state

    return Model(model.init, apply, f"{model.name}+hidden", model.module)


def _gpt(model: Any, what: str) -> tuple[Model, dict[str, Any]]:
    """``(Model, config)`` of a library GPT given as its Model or as an NNX ``GPT`` module;
    ConfigError for anything else."""
    config = _tgpt.resolve_config(model, what)
    return (_tgpt.build(config) if isinstance(model, GPT) else model), config


def _model_state(model: Model, seed: int) -> Any:
    """``model``'s initial model state, without running ``init`` when it is empty (the
    GPT's is: it has no BatchNorm or other non-parameter state)."""
    shapes = jax.eval_shape(lambda k: model.init(k, None)[1], jax.random.key(seed))
    return shapes if not jax.tree.leaves(shapes) else model.init(jax.random.key(seed), None)[1]


def _check_layer_map(layer_map: Mapping[int, int], n_student: int, n_teacher: int) -> dict:
    out = {}
    for s, t in dict(layer_map).items():
        for what, v, n in (("student", s, n_student), ("teacher", t, n_teacher)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v < n:
                raise ConfigError(f"distill.layer_map: {what} block {v!r} (in {s!r}: {t!r}) is "
                                  f"not an integer in 0..{n - 1} (the {what}'s blocks)")
        out[int(s)] = int(t)
    if not out:
        raise ConfigError("distill.layer_map: empty; map at least one student block to a "
                          "teacher block, e.g. {0: 0}")
    return out


def _check_channels(channels: Sequence[int] | None, student_width: int,
                    teacher_width: int) -> np.ndarray | None:
    if channels is None:
        if student_width != teacher_width:
            raise ConfigError(f"distill.channels: None, but the student's width "
                              f"{student_width} differs from the teacher's {teacher_width}; "
                              f"give the teacher channels the student kept (e.g. "
                              f"Pruned.kept['channels'])")
        return None
    ch = np.asarray(channels)
    if (ch.ndim != 1 or ch.size != student_width or not np.issubdtype(ch.dtype, np.integer)
            or ch.min() < 0 or ch.max() >= teacher_width or np.unique(ch).size != ch.size):
        raise ConfigError(f"distill.channels: got {ch.size} entries (dtype {ch.dtype}); must be "
                          f"{student_width} distinct integer teacher channels in "
                          f"[0, {teacher_width})")
    return ch


def lm_distill_loss(student: Any, teacher: Any, *, temperature: float = 1.0,
                    kd_weight: float = 1.0, ce_weight: float = 0.0, hidden_weight: float = 0.0,
                    layer_map: Mapping[int, int] | None = None,
                    channels: Sequence[int] | None = None) -> LossFn:
    """The ``loss_fn(outputs, batch)`` of GPT→GPT distillation (see the module doc).

    ``outputs`` are :func:`with_hidden_states`'s, ``batch["loss_state"]`` the teacher's
    params. ``layer_map`` (student block → teacher block; default the identity when both
    have as many blocks) and ``channels`` (the teacher's residual channels the student
    kept, in the student's order; default all, same width) matter only with
    ``hidden_weight > 0``. Metrics: ``kd``, ``ce``, ``hidden`` and ``bpb`` (= ce / ln 2).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxcomp.models import get_model
        >>> t = get_model("gpt", input_shape=(8,), num_layers=1, width=16, num_heads=2)
        >>> tp, _ = t.init(jax.random.key(0), None)
        >>> loss = lm_distill_loss(t, t, hidden_weight=1.0)
        >>> x = jnp.ones((2, 8), jnp.int32)
        >>> out, _ = with_hidden_states(t).apply(tp, None, x)
        >>> val, aux = loss(out, {"x": x, "y": x, "loss_state": tp})
        >>> float(aux["kd"]), float(aux["hidden"])        # a model distilled into itself
        (0.0, 0.0)
    """
    (student, s_cfg), (teacher, t_cfg) = (_gpt(student, "lm_distill_loss.student"),
                                          _gpt(teacher, "lm_distill_loss.teacher"))
    s_spec, t_spec = gb.gpt_spec(student), gb.gpt_spec(teacher)
    check_temperature(temperature)
    weights = {"distill.kd_weight": kd_weight, "distill.ce_weight": ce_weight,
               "distill.hidden_weight": hidden_weight}
    for name, w in weights.items():
        check_weight(name, w)
    if not any(float(w) > 0 for w in weights.values()):
        raise ConfigError("distill: kd_weight, ce_weight and hidden_weight are all 0; at "
                          "least one loss term must have a positive weight")
    use_hidden = float(hidden_weight) > 0
    pairs: dict[int, int] = {}
    ch = None
    if use_hidden:
        if layer_map is None:
            if s_spec.num_layers != t_spec.num_layers:
                raise ConfigError(f"distill.layer_map: None, but the student has "
                                  f"{s_spec.num_layers} blocks and the teacher "
                                  f"{t_spec.num_layers}; map student blocks to teacher blocks")
            layer_map = {i: i for i in range(s_spec.num_layers)}
        pairs = _check_layer_map(layer_map, s_spec.num_layers, t_spec.num_layers)
        ch = _check_channels(channels, s_cfg["width"], t_cfg["width"])

    def loss_fn(outputs: Any, batch: dict) -> tuple[jax.Array, dict]:
        if "loss_state" not in batch:
            raise ConfigError("lm_distill_loss: the batch has no 'loss_state' (the teacher's "
                              "params); distill_lm passes it, or give train_lm(..., "
                              "loss_state=teacher_params)")
        tparams = jax.lax.stop_gradient(batch["loss_state"])
        t_logits, t_hidden = states_forward(t_spec, tparams, batch["x"])
        z = outputs["logits"]
        kd = soft_target_kl(z, t_logits, temperature)
        ce = jnp.mean(token_nll(z, batch["y"]))
        hid = jnp.zeros((), jnp.float32)
        for s, t in pairs.items():
            target = t_hidden[t] if ch is None else t_hidden[t][..., ch]
            err = jnp.mean(jnp.square(outputs["hidden"][s] - target))
            hid = hid + err / (jnp.mean(jnp.square(target)) + 1e-6)
        if pairs:
            hid = hid / len(pairs)
        total = kd_weight * kd + ce_weight * ce + hidden_weight * hid
        return total, {"kd": kd, "ce": ce, "hidden": hid, "bpb": ce / LN2}

    return loss_fn


def distill_lm(student: Any, teacher: Any, teacher_params: Any, data: TextData,
               tx: optax.GradientTransformation, *, steps: int, batch_size: int, context: int,
               student_params: Any = None, seed: int = 0, eval_every: int | None = None,
               max_eval_windows: int | None = None, temperature: float = 1.0,
               kd_weight: float = 1.0, ce_weight: float = 0.0, hidden_weight: float = 0.0,
               layer_map: Mapping[int, int] | None = None,
               channels: Sequence[int] | None = None) -> tuple[TrainState, list[dict]]:
    """Train ``student`` (from ``student_params``, e.g. a pruned GPT's, or a fresh init)
    to match ``teacher`` on ``data.train`` windows, through the engine.

    Each model is a ``get_model("gpt", ...)`` Model with its params, or an NNX ``GPT``
    module (params ``None``: the module's own). Params of another shape, a ``context``
    beyond either model's, or vocabularies that differ are a ConfigError.

    Same data stream, optimizer and step count semantics as :func:`train_lm` (so a
    from-scratch run of ``train_lm`` with equal arguments gets the same training).
    Returns ``(state, history)``; each history row has ``train_lm``'s keys (its
    ``train_loss`` is the distillation loss, ``train_bpb`` the cross-entropy's) plus the
    chunk's mean ``train_kd``, ``train_ce`` and ``train_hidden``. Neither model's params
    are consumed.
    """
    init = None
    if student_params is None and not isinstance(student, GPT):
        init = student.init(jax.random.key(seed), None)
        student_params = init[0]
    s = _tgpt.resolve(student, student_params, "distill_lm.student")
    t = _tgpt.resolve(teacher, teacher_params, "distill_lm.teacher")
    if s.config["vocab_size"] != t.config["vocab_size"]:
        raise ConfigError(f"distill_lm: the student's vocabulary has {s.config['vocab_size']} "
                          f"entries and the teacher's {t.config['vocab_size']}; they must agree")
    limit = min(s.config["context"], t.config["context"])
    if isinstance(context, bool) or not isinstance(context, int) or not 1 <= context <= limit:
        raise ConfigError(f"distill_lm.context: got {context!r}; allowed an integer in "
                          f"1..{limit} (the student's and the teacher's context)")
    loss_fn = lm_distill_loss(s.model, t.model, temperature=temperature, kd_weight=kd_weight,
                              ce_weight=ce_weight, hidden_weight=hidden_weight,
                              layer_map=layer_map, channels=channels)
    ms = init[1] if init is not None else _model_state(s.model, seed)
    state = create_state(s.params, ms, tx, key=jax.random.key(seed + 1))
    return train_lm(s.model, data, tx, steps=steps, batch_size=batch_size, context=context,
                    seed=seed, eval_every=eval_every, state=state,
                    max_eval_windows=max_eval_windows, loss_fn=loss_fn, loss_state=t.params,
                    train_model=with_hidden_states(s.model))


__all__ = ["distill_lm", "lm_distill_loss", "states_forward", "with_hidden_states"]
