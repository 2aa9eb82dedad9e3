"""The masked model: the full-size GPT with the removed parts zeroed, the reference that
the physically pruned model must equal.

Removing a head, a key/value head, an MLP neuron or a whole block is *exactly* zeroing
it: :func:`masked_params` zeroes the removed slices (and a removed block's ``o`` and
``down``, making the block the identity), and the full model on those params computes
what the smaller one computes. Removing residual-stream channels is not: LayerNorm
normalizes over all channels, so zeroed channels still change its mean and variance.
The masked model of a channel-pruned GPT is therefore the zeroed params *and*
LayerNorms whose statistics run over the kept channels only (a masked LayerNorm);
:func:`masked_forward` computes that (with nothing but heads, neurons or blocks removed
it equals ``model.apply`` on :func:`masked_params`).

Example:
    >>> import numpy as np
    >>> from flax import nnx
    >>> from jaxcomp.models.gpt import GPT
    >>> from jaxcomp.prune.transformer import apply_kept
    >>> gpt = GPT(num_layers=2, width=16, num_heads=2, context=8, rngs=nnx.Rngs(0))
    >>> kept = {"heads": {"0": [1], "1": [0]}, "kv_heads": {"0": [1], "1": [0]},
    ...         "channels": list(range(12))}
    >>> small = apply_kept(gpt, None, kept)              # the physically smaller GPT
    >>> x = np.arange(16).reshape(2, 8)
    >>> out, ref = small.module()(x), masked_forward(gpt, None, kept, x)
    >>> bool(np.allclose(out, ref, atol=1e-5)), small.config["width"]
    (True, 12)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxcomp.models import gpt_blocks as gb
from jaxcomp.models.gpt_target import check_tokens, resolve
from jaxcomp.prune.transformer import structure as st


def masked_params(model: Any, params: Any, kept: Mapping[str, Any]) -> Any:
    """``params`` with everything ``kept`` leaves out zeroed (same container: an
    ``nnx.State`` stays one). See the module docstring for channels."""
    t = resolve(model, params, "masked_params.model")
    zeroed = st.zeroed_params(t.config, t.params, st.check_kept(t.config, kept))
    if params is None or isinstance(params, nnx.State):
        out = jax.tree.map(lambda a: a, nnx.state(model, nnx.Param) if params is None
                           else params)
        nnx.replace_by_pure_dict(out, zeroed)
        return out
    return zeroed


_forward = jax.jit(gb.forward, static_argnums=0)  # one program per GPT spec


def with_norm_masks(params: dict, mask: jax.Array) -> dict:
    """Pure GPT params with ``mask`` added to every LayerNorm (a masked LayerNorm in
    :func:`jaxcomp.models.gpt_blocks.norm_forward`)."""
    blocks = {i: {**b, "ln1": {**b["ln1"], "mask": mask}, "ln2": {**b["ln2"], "mask": mask}}
              for i, b in params["blocks"].items()}
    return {**params, "blocks": blocks, "ln_f": {**params["ln_f"], "mask": mask}}


def masked_forward(model: Any, params: Any, kept: Mapping[str, Any], tokens: Any
                   ) -> jax.Array:
    """Logits ``(B, T, vocab)`` of the masked model (zeroed params, LayerNorm statistics
    over the kept channels) on ``tokens`` ``(B, T)``."""
    t = resolve(model, params, "masked_forward.model")
    kept = st.check_kept(t.config, kept)
    tokens = check_tokens(tokens, t.config, "masked_forward.tokens")
    p = st.zeroed_params(t.config, t.params, kept)
    if len(kept["channels"]) < t.config["width"]:
        mask = np.zeros(t.config["width"], np.float32)
        mask[kept["channels"]] = 1.0
        p = with_norm_masks(p, jnp.asarray(mask))
    return _forward(t.spec, p, tokens)


__all__ = ["masked_forward", "masked_params", "with_norm_masks"]
