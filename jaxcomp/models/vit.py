"""A small Vision Transformer in Flax NNX (e.g. Fashion-MNIST 28×28×1, patches of 4 or 7).

Non-overlapping ``patch × patch`` patches are flattened and projected by the
linear layer ``patch``; a learned position table ``pos`` (and a class token
``cls`` with ``pool="cls"``) is added; the blocks are the GPT's pre-LayerNorm
blocks without the causal mask (``blocks/{i}/attn/{q,k,v,o}``,
``blocks/{i}/mlp/{up,gate,down}``), then ``ln_f`` and the classifier ``head``.

Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from jaxcomp.models.vit import ViT
    >>> vit = ViT(width=32, num_layers=1, num_heads=2, rngs=nnx.Rngs(0))
    >>> vit(jnp.zeros((3, 28, 28, 1))).shape
    (3, 10)
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxcomp.core.errors import ConfigError, check_choice
from jaxcomp.models.gpt import Block, check_heads, default_hidden


def patchify(x: jax.Array, patch: int) -> jax.Array:
    """(B, H, W, C) images to (B, H/p · W/p, p·p·C) row-major patches.

    Example:
        >>> import jax.numpy as jnp
        >>> patchify(jnp.arange(16.0).reshape(1, 4, 4, 1), 2)[0, 1].tolist()
        [2.0, 3.0, 6.0, 7.0]
    """
    b, h, w, c = x.shape
    x = x.reshape(b, h // patch, patch, w // patch, patch, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, (h // patch) * (w // patch), -1)


class ViT(nnx.Module):
    """Patch embedding, learned positions, pre-LayerNorm blocks, class-token or mean pooling.

    Args:
      input_shape: ``(H, W, C)``; both ``H`` and ``W`` multiples of ``patch``.
      patch: patch side; num_classes: logits per image.
      num_layers, width, num_heads, num_kv_heads, mlp, mlp_hidden: as for the GPT.
      pool: ``"cls"`` (a learned class token) or ``"mean"`` (mean over patches).
    """

    def __init__(self, input_shape: Sequence[int] = (28, 28, 1), *, patch: int = 7,
                 num_classes: int = 10, num_layers: int = 2, width: int = 64,
                 num_heads: int = 4, num_kv_heads: int | None = None, mlp: str = "gelu",
                 mlp_hidden: int | None = None, pool: str = "cls", rngs: nnx.Rngs):
        if len(input_shape) != 3:
            raise ConfigError(f"model.input_shape: got {tuple(input_shape)}; the ViT needs "
                              "images (H, W, C)")
        h, w, c = input_shape
        if not isinstance(patch, int) or patch < 1 or h % patch or w % patch:
            raise ConfigError(f"model.patch: got {patch!r}; must divide the image size {h}x{w}")
        kv = check_heads(width, num_heads, num_kv_heads, mlp)
        check_choice("model.pool", pool, ("cls", "mean"))
        self.patch_size, self.pool = patch, pool
        n = (h // patch) * (w // patch) + (pool == "cls")
        init = nnx.initializers.normal(0.02)
        self.patch = nnx.Linear(patch * patch * c, width, rngs=rngs)
        self.cls = nnx.Param(init(rngs.params(), (1, 1, width))) if pool == "cls" else None
        self.pos = nnx.Param(init(rngs.params(), (1, n, width)))
        hidden = mlp_hidden or default_hidden(width, mlp)
        self.blocks = nnx.List([Block(width, num_heads, kv, mlp, hidden, causal=False,
                                      rngs=rngs) for _ in range(num_layers)])
        self.ln_f = nnx.LayerNorm(width, rngs=rngs)
        self.head = nnx.Linear(width, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.patch(patchify(x, self.patch_size))
        if self.cls is not None:
            x = jnp.concatenate([jnp.broadcast_to(self.cls[...], (x.shape[0], 1, x.shape[2])),
                                 x], axis=1)
        x = x + self.pos[...]
        positions = jnp.arange(x.shape[1])
        for block in self.blocks:
            x, _ = block(x, positions)
        x = self.ln_f(x)
        return self.head(x[:, 0] if self.cls is not None else jnp.mean(x, axis=1))


__all__ = ["ViT", "patchify"]
