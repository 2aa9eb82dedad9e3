"""Depth pruning of a GPT: whole blocks removed, the rest renumbered.

Block importance (:func:`block_importance`):

* ``"loss"``: the increase of the mean next-byte loss on the calibration tokens when
  that block alone is skipped (its ``o`` and ``down`` zeroed: the block becomes the
  identity), one block at a time — ``num_layers + 1`` evaluations of one jitted program;
* ``"cosine"``: Minitron's block importance ``1 - cos(x_in, x_out)`` (from
  :func:`~jaxcomp.prune.transformer.importance`);
* ``"random"``: uniform scores from ``seed`` (a control); ``"last"``: the later a block,
  the less important (drops the last blocks).

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp.models import get_model
    >>> model = get_model("gpt", input_shape=(16,), num_layers=3, width=32, num_heads=4)
    >>> params, _ = model.init(jax.random.key(0), None)
    >>> tokens = jnp.arange(64).reshape(4, 16)
    >>> small = prune_depth(model, params, tokens, num_layers=2, method="last")
    >>> small.kept["blocks"], small.config["num_layers"]
    ([0, 1], 2)
    >>> block_importance(model, params, tokens, method="loss").shape
    (3,)
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcomp.core.errors import check_choice
from jaxcomp.models import gpt_blocks as gb
from jaxcomp.models.gpt_target import Target, batches, check_tokens, resolve
from jaxcomp.models.lm import token_nll
from jaxcomp.prune.transformer import structure as st
from jaxcomp.prune.transformer.importance import importance
from jaxcomp.prune.transformer.result import Pruned, finish
from jaxcomp.prune.transformer.width import check_size, top

METHODS = ("loss", "cosine", "random", "last")


@functools.partial(jax.jit, static_argnums=0)
def _nll_sum(spec: gb.GPTSpec, p: Any, tokens: jax.Array) -> jax.Array:
    logits = gb.forward(spec, p, tokens[:, :-1])
    return jnp.sum(token_nll(logits, tokens[:, 1:]))


def mean_loss(t: Target, p: dict, tokens: jax.Array, batch_size: int) -> float:
    """Mean next-byte loss (nats) of pure params ``p`` on ``tokens``."""
    total = sum(float(_nll_sum(t.spec, p, xb)) for xb in batches(tokens, batch_size))
    return total / (tokens.shape[0] * (tokens.shape[1] - 1))


def block_importance(model: Any, params: Any, calib_tokens: Any, *, method: str = "loss",
                     seed: int = 0, batch_size: int = 16) -> np.ndarray:
    """``(num_layers,)`` block scores (higher = keep), by ``method`` (module docstring)."""
    check_choice("prune_depth.method", method, METHODS)
    t = resolve(model, params, "prune_depth.model")
    n = t.config["num_layers"]
    if method == "last":
        return np.arange(n, 0, -1, dtype=np.float64)
    if method == "random":
        return np.random.default_rng(seed).uniform(size=n)
    tokens = check_tokens(calib_tokens, t.config, "prune_depth.calib_tokens",
                          min_len=1 if method == "cosine" else 2)
    if method == "cosine":
        return importance(model, params, tokens, batch_size=batch_size).blocks
    base = mean_loss(t, t.params, tokens, batch_size)
    full = st.full_kept(t.config)
    return np.asarray([mean_loss(t, st.zeroed_params(
        t.config, t.params, {**full, "blocks": [j for j in range(n) if j != i]}), tokens,
        batch_size) - base for i in range(n)])


def prune_depth(model: Any, params: Any, calib_tokens: Any, *, num_layers: int,
                method: str = "loss", seed: int = 0, batch_size: int = 16) -> Pruned:
    """Keep the ``num_layers`` most important blocks (in their order), physically.

    Args:
      model, params: the GPT (its ``Model`` and params, or an NNX GPT module and None).
      calib_tokens: ``(N, T)`` integer byte tokens (``"loss"``: ``T >= 2``; ``"random"``
        and ``"last"`` accept None).
      num_layers: blocks to keep, ``1..num_layers``.
      method: ``"loss"``, ``"cosine"``, ``"random"`` or ``"last"``.
    """
    check_choice("prune_depth.method", method, METHODS)
    t = resolve(model, params, "prune_depth.model")
    k = check_size("prune_depth.num_layers", num_layers, t.config["num_layers"])
    scores = block_importance(model, params, calib_tokens, method=method, seed=seed,
                              batch_size=batch_size)
    kept = {**st.full_kept(t.config), "blocks": top(scores, k)}
    return finish(t, st.check_kept(t.config, kept))


__all__ = ["METHODS", "block_importance", "mean_loss", "prune_depth"]
