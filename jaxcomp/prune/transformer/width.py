"""Width pruning of a GPT: fewer heads, MLP neurons and residual channels, physically.

:func:`prune_width` keeps, in every block, the most important key/value groups and,
inside each kept group, its most important query heads; the most important MLP neurons
of every block; and the most important residual-stream channels (one set for the whole
stream). Targets are the new sizes; ``None`` keeps a size.

Heads and grouped-query attention: ``g = num_heads / num_kv_heads`` query heads share a
key/value head. With only ``num_heads`` given, whole groups are removed (``g`` stays,
``num_kv_heads = num_heads / g``, so ``num_heads`` must be a multiple of ``g``); with only
``num_kv_heads``, ``num_heads = num_kv_heads · g``; with both, each of the
``num_kv_heads`` kept groups keeps ``num_heads / num_kv_heads`` (a whole number, at most
``g``) of its query heads. The head size never changes (heads go whole), so a RoPE
model's head size stays even; a width that no longer equals ``num_heads · head_dim`` is
carried by the GPT's ``head_dim`` keyword.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp.models import get_model
    >>> from jaxcomp.prune import transformer as tp
    >>> model = get_model("gpt", input_shape=(16,), num_layers=2, width=32, num_heads=4,
    ...                   num_kv_heads=2, mlp="swiglu")
    >>> params, _ = model.init(jax.random.key(0), None)
    >>> tokens = jnp.arange(64).reshape(4, 16)
    >>> imp = tp.importance(model, params, tokens)
    >>> small = prune_width(model, params, imp, num_heads=2, mlp_hidden=40, width=24)
    >>> {k: small.config[k] for k in ("num_heads", "num_kv_heads", "head_dim", "width")}
    {'num_heads': 2, 'num_kv_heads': 1, 'head_dim': 8, 'width': 24}
    >>> small.params_after < small.params_before
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxcomp.core.errors import ConfigError
from jaxcomp.models.gpt_target import resolve
from jaxcomp.prune.transformer import structure as st
from jaxcomp.prune.transformer.importance import Importance, check_importance
from jaxcomp.prune.transformer.result import Pruned, finish


def top(scores: np.ndarray, k: int) -> list[int]:
    """The indices of the ``k`` highest scores, ascending (ties: the lower index)."""
    return sorted(int(i) for i in np.argsort(-np.asarray(scores), kind="stable")[:k])


def check_size(what: str, value: Any, current: int) -> int:
    """``value`` (None: ``current``) as a size in ``1..current``, else a ConfigError."""
    if value is None:
        return current
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or \
            not 1 <= value <= current:
        raise ConfigError(f"{what}: got {value!r}; allowed an integer in 1..{current} (the "
                          "model's current size; pruning only removes)")
    return int(value)


def head_targets(cfg: dict[str, Any], num_heads: Any, num_kv_heads: Any) -> tuple[int, int]:
    """The new ``(num_heads, num_kv_heads)`` (see the module docstring for the rules)."""
    h, k = cfg["num_heads"], cfg["num_kv_heads"]
    g = h // k
    if num_heads is None and num_kv_heads is None:
        return h, k
    if num_kv_heads is None:
        h2 = check_size("prune_width.num_heads", num_heads, h)
        if h2 % g:
            raise ConfigError(
                f"prune_width.num_heads: got {h2}; heads go in whole grouped-query groups of "
                f"{g} (num_heads/num_kv_heads = {h}/{k}), so allowed "
                f"{list(range(g, h + 1, g))}; or pass num_kv_heads too to shrink the groups")
        return h2, h2 // g
    k2 = check_size("prune_width.num_kv_heads", num_kv_heads, k)
    if num_heads is None:
        return k2 * g, k2
    h2 = check_size("prune_width.num_heads", num_heads, h)
    if h2 % k2 or h2 // k2 > g:
        raise ConfigError(
            f"prune_width.num_heads: got {h2} with num_kv_heads={k2}; each kept group keeps "
            f"num_heads/num_kv_heads query heads, a whole number of at most {g} (the model "
            f"has {h} heads in {k} groups), so allowed {list(range(k2, k2 * g + 1, k2))}")
    return h2, k2


def width_kept(cfg: dict[str, Any], imp: Importance, heads: int, kv_heads: int,
               hidden: int, width: int) -> dict[str, Any]:
    """The kept record of the most important parts for the given new sizes."""
    g, g2 = cfg["num_heads"] // cfg["num_kv_heads"], heads // kv_heads
    kept = st.full_kept(cfg)
    for i in range(cfg["num_layers"]):
        groups = top(imp.kv_groups[i], kv_heads)
        kept["kv_heads"][str(i)] = groups
        kept["heads"][str(i)] = [k * g + j for k in groups
                                 for j in top(imp.heads[i, k * g:(k + 1) * g], g2)]
        kept["neurons"][str(i)] = top(imp.neurons[i], hidden)
    kept["channels"] = top(imp.channels, width)
    return kept


def prune_width(model: Any, params: Any, imp: Importance, *, num_heads: int | None = None,
                num_kv_heads: int | None = None, mlp_hidden: int | None = None,
                width: int | None = None) -> Pruned:
    """Remove the least important heads, neurons and residual channels physically.

    Args:
      model, params: the GPT (its ``Model`` and params, or an NNX GPT module and None).
      imp: :func:`~jaxcomp.prune.transformer.importance` of this model.
      num_heads, num_kv_heads: new head counts (rules in the module docstring).
      mlp_hidden: new MLP hidden size (``1..mlp_hidden``).
      width: new residual-stream width (``1..width``; any value: the head size is kept
        through the ``head_dim`` keyword).

    Returns:
      A :class:`~jaxcomp.prune.transformer.result.Pruned` whose logits equal
      :func:`~jaxcomp.prune.transformer.masked.masked_forward` of its ``kept``.
    """
    t = resolve(model, params, "prune_width.model")
    cfg = t.config
    check_importance(imp, cfg, "prune_width.importance")
    h2, k2 = head_targets(cfg, num_heads, num_kv_heads)
    f2 = check_size("prune_width.mlp_hidden", mlp_hidden, cfg["mlp_hidden"])
    d2 = check_size("prune_width.width", width, cfg["width"])
    return finish(t, st.check_kept(cfg, width_kept(cfg, imp, h2, k2, f2, d2)))


__all__ = ["check_size", "head_targets", "prune_width", "top", "width_kept"]
