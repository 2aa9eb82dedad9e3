"""A library GPT as the transformer tools take it: keyword config, pure params, checks.

Used by structured pruning (:mod:`jaxcomp.prune.transformer`) and LM distillation
(:mod:`jaxcomp.distill.lm`).

:func:`resolve` accepts what users hold — the :class:`~jaxcomp.flax.Model` of
``get_model("gpt", ...)`` with its params (an ``nnx.State`` or a pure dict), or an NNX
:class:`~jaxcomp.models.gpt.GPT` module (params ``None``: the module's own) — and
returns one :class:`Target`: the model, the pure params, the GPT keyword config
(:func:`config_of`: enough for ``get_model("gpt", input_shape=(context,), **config)``
to rebuild it) and the :class:`~jaxcomp.models.gpt_blocks.GPTSpec` of the pure forward.

Example:
    >>> from flax import nnx
    >>> from jaxcomp.models.gpt import GPT
    >>> gpt = GPT(num_layers=1, width=32, num_heads=4, num_kv_heads=2, context=16,
    ...           rngs=nnx.Rngs(0))
    >>> t = resolve(gpt, None)
    >>> t.config["num_kv_heads"], t.config["head_dim"], t.config["mlp_hidden"]
    (2, 8, 128)
    >>> t.params["blocks"][0]["attn"]["k"]["kernel"].shape
    (32, 16)
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxcomp.core.errors import ConfigError
from jaxcomp.flax.model import Model
from jaxcomp.flax.modules import is_nnx
from jaxcomp.models import gpt_blocks as gb
from jaxcomp.models.gpt import GPT


class Target(NamedTuple):
    """A resolved GPT: model, pure params, keyword config, pure-forward spec."""

    model: Model
    params: dict
    config: dict[str, Any]
    spec: gb.GPTSpec


def config_of(gpt: GPT) -> dict[str, Any]:
    """The keyword config of a GPT module (concrete or abstract): the
    :class:`~jaxcomp.models.gpt.GPT` arguments that rebuild a module of its shape."""
    attn, mlp = gpt.blocks[0].attn, gpt.blocks[0].mlp
    return {"vocab_size": int(gpt.vocab_size), "num_layers": len(gpt.blocks),
            "width": int(gpt.width), "num_heads": int(attn.num_heads),
            "num_kv_heads": int(attn.num_kv_heads), "head_dim": int(attn.head_dim),
            "context": int(gpt.context), "mlp": mlp.kind,
            "mlp_hidden": int(mlp.up.out_features),
            "positions": "learned" if gpt.pos is not None else "rope",
            "tie_embeddings": gpt.head is None, "bias": bool(attn.q.use_bias),
            "rope_base": float(attn.rope_base if attn.rope_base is not None else 10000.0)}


def _key(config: dict[str, Any]) -> tuple:
    return tuple(sorted(config.items()))


@functools.lru_cache(maxsize=64)
def _build(key: tuple) -> Model:
    from jaxcomp.models import get_model

    config = dict(key)
    return get_model("gpt", input_shape=(config["context"],), **config)


def build(config: dict[str, Any]) -> Model:
    """``get_model("gpt", ...)`` of a keyword config (one Model per config, so jitted
    programs keyed on it are shared)."""
    return _build(_key(config))


@functools.lru_cache(maxsize=64)
def _abstract_gpt(key: tuple) -> tuple[dict[str, tuple[int, ...]], gb.GPTSpec]:
    gpt = nnx.eval_shape(lambda: GPT(rngs=nnx.Rngs(0), **dict(key)))
    return _shapes(nnx.to_pure_dict(nnx.state(gpt, nnx.Param))), gb.module_spec(gpt)


def expected_shapes(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """``{path: shape}`` of the params of a GPT keyword config (computed abstractly)."""
    return dict(_abstract_gpt(_key(config))[0])


@functools.lru_cache(maxsize=64)
def _model_config(model: Model) -> dict[str, Any] | str:
    gpt = nnx.eval_shape(lambda: model.module(nnx.Rngs(0)))
    return config_of(gpt) if isinstance(gpt, GPT) else type(gpt).__name__


def gpt_config(model: Any) -> dict[str, Any]:
    """The GPT keyword config of a ``get_model("gpt", ...)`` Model or an NNX GPT module.

    Example:
        >>> from jaxcomp.models import get_model
        >>> gpt_config(get_model("gpt", input_shape=(8,), num_layers=1, width=16,
        ...                      num_heads=2))["mlp_hidden"]
        64
    """
    return dict(resolve_config(model, "gpt_config.model"))


def resolve_config(model: Any, what: str) -> dict[str, Any]:
    """The config of a GPT module or GPT Model; ConfigError for anything else."""
    if isinstance(model, GPT):
        return config_of(model)
    if not isinstance(model, Model) or not is_nnx(model):
        raise ConfigError(f"{what}: got {getattr(model, 'name', type(model).__name__)!r}; "
                          "expected the Model of get_model('gpt', ...) or a "
                          "jaxcomp.models.gpt.GPT module")
    try:
        config = _model_config(model)
    except TypeError:  # an unhashable Model: not cached
        config = _model_config.__wrapped__(model)
    if isinstance(config, str):
        raise ConfigError(f"{what}: {model.name!r} builds a {config}, not a "
                          "jaxcomp.models.gpt.GPT")
    return config


def abstract_params(config: dict[str, Any]) -> tuple[Model, Any, Any]:
    """``(model, params, model_state)`` of a config with abstract (shape-only) leaves:
    ``model.init`` traced, not run; fill the params with ``nnx.replace_by_pure_dict``."""
    model = build(config)
    params, ms = jax.eval_shape(model.init, jax.random.key(0), None)
    return model, params, ms


def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    from jaxcomp.core import paths as _paths

    return {p: tuple(np.shape(a)) for p, a in _paths.flatten(tree)}


def resolve(model: Any, params: Any, what: str = "model") -> Target:
    """A :class:`Target` from a GPT ``Model`` + params or an NNX GPT module (+ params or
    ``None``); ConfigError for anything else or params of another shape."""
    config = resolve_config(model, what)
    if isinstance(model, GPT):
        params = nnx.state(model, nnx.Param) if params is None else params
        model = build(config)
    elif params is None:
        raise ConfigError(f"{what}: params is None; pass the Model's params (from "
                          "model.init) or pass the NNX GPT module itself")
    p = gb.pure(params)
    want = expected_shapes(config)
    got = _shapes(p)
    bad = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
    if bad:
        raise ConfigError(f"{what}: params do not fit the GPT config {config}: "
                          f"{[(k, got.get(k), want.get(k)) for k in bad[:4]]} (got, expected)")
    return Target(model, p, config, _abstract_gpt(_key(config))[1])


def check_tokens(tokens: Any, config: dict[str, Any], what: str, min_len: int = 1
                 ) -> jax.Array:
    """Calibration tokens as an int32 ``(N, T)`` array; ConfigError naming ``what`` for a
    wrong rank, dtype, length (``min_len..context``) or a token outside the vocabulary."""
    a = np.asarray(tokens)
    if a.ndim != 2 or a.shape[0] < 1:
        raise ConfigError(f"{what}: got shape {a.shape}; expected (N, T) token ids with "
                          "N >= 1")
    if not np.issubdtype(a.dtype, np.integer):
        raise ConfigError(f"{what}: got dtype {a.dtype}; expected integer token ids")
    ctx, vocab = config["context"], config["vocab_size"]
    if not min_len <= a.shape[1] <= ctx:
        raise ConfigError(f"{what}: sequence length {a.shape[1]}; allowed {min_len}..{ctx} "
                          "(the model's context)")
    lo, hi = int(a.min()), int(a.max())
    if lo < 0 or hi >= vocab:
        raise ConfigError(f"{what}: token ids span {lo}..{hi}; allowed 0..{vocab - 1} "
                          "(the model's vocabulary)")
    return jnp.asarray(a, jnp.int32)


def batches(tokens: jax.Array, batch_size: int) -> list[jax.Array]:
    """``tokens`` cut into batches of ``batch_size`` rows (the last may be shorter)."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size: got {batch_size!r}; must be an integer >= 1")
    return [tokens[i:i + batch_size] for i in range(0, tokens.shape[0], batch_size)]


def count(params: Any) -> int:
    """The number of parameters (array elements) in a pytree."""
    return int(sum(np.size(a) for a in jax.tree.leaves(params)))


__all__ = ["Target", "abstract_params", "batches", "build", "check_tokens", "config_of", "count",
           "expected_shapes", "gpt_config", "resolve", "resolve_config"]
