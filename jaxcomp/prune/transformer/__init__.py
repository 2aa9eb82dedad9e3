"""Structured pruning of the library's GPT with physical removal: attention heads
(grouped-query groups kept consistent), MLP neurons, residual-stream channels and whole
blocks, ranked by activation statistics over calibration tokens (Minitron), by the
loss change (blocks), by weight magnitude or at random (a control).

The result (:class:`Pruned`) is a real, smaller GPT — ``get_model("gpt", ...)`` of the
new keyword config, its params and an NNX module (:meth:`Pruned.module`) — whose logits
equal the masked model's (:func:`masked_forward`; for residual channels the masked
model's LayerNorms take their statistics over the kept channels). Guide:
``docs/transformer_pruning.md``.

Example:
    >>> import jax, jax.numpy as jnp, numpy as np
    >>> from jaxcomp.models import get_model
    >>> from jaxcomp.prune import transformer as tp
    >>> model = get_model("gpt", input_shape=(16,), num_layers=2, width=32, num_heads=4)
    >>> params, _ = model.init(jax.random.key(0), None)
    >>> tokens = (jnp.arange(128).reshape(8, 16) * 7) % 256
    >>> imp = tp.importance(model, params, tokens)
    >>> small = tp.prune_width(model, params, imp, num_heads=2, mlp_hidden=64, width=24)
    >>> small.config["width"], small.config["num_heads"], small.config["mlp_hidden"]
    (24, 2, 64)
    >>> out, _ = small.model.apply(small.params, small.model_state, tokens)
    >>> ref = tp.masked_forward(model, params, small.kept, tokens)
    >>> bool(np.allclose(out, ref, atol=1e-5))
    True
"""

from jaxcomp.models.gpt_target import gpt_config
from jaxcomp.prune.transformer.depth import block_importance, prune_depth
from jaxcomp.prune.transformer.importance import Importance, importance
from jaxcomp.prune.transformer.io import load_pruned, save_pruned
from jaxcomp.prune.transformer.masked import masked_forward, masked_params
from jaxcomp.prune.transformer.result import Pruned, apply_kept
from jaxcomp.prune.transformer.structure import full_kept, gpt_graph
from jaxcomp.prune.transformer.width import prune_width

__all__ = ["Importance", "Pruned", "apply_kept", "block_importance", "full_kept", "gpt_config",
           "gpt_graph", "importance", "load_pruned", "masked_forward", "masked_params",
           "prune_depth", "prune_width", "save_pruned"]
