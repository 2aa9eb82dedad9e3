"""Multi-layer perceptrons; the default is LeNet-300-100.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp.models.mlp import MLP
    >>> v = MLP().init(jax.random.key(0), jnp.ones((1, 28, 28, 1)))
    >>> [v["params"][f"Dense_{i}"]["kernel"].shape for i in range(3)]
    [(784, 300), (300, 100), (100, 10)]
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp
from flax import nnx


class MLP(nn.Module):
    """Dense → ReLU stack; inputs are flattened. Layers are ``Dense_0 … Dense_k``."""

    features: Sequence[int] = (300, 100)
    num_classes: int = 10
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = x.reshape((x.shape[0], -1))
        for f in self.features:
            x = nn.relu(nn.Dense(f)(x))
            if self.dropout:
                x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(self.num_classes)(x)


class NNXMLP(nnx.Module):
    """The NNX twin of :class:`MLP`; layers are ``layers/0 … layers/k``."""

    def __init__(self, in_features: int, features: Sequence[int] = (300, 100),
                 num_classes: int = 10, dropout: float = 0.0, *, rngs: nnx.Rngs):
        sizes = [in_features, *features, num_classes]
        pairs = zip(sizes[:-1], sizes[1:], strict=True)
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in pairs])
        self.dropout = nnx.Dropout(dropout, rngs=rngs) if dropout else None

    def __call__(self, x):
        x = jnp.reshape(x, (x.shape[0], -1))
        for layer in self.layers[:-1]:
            x = nnx.relu(layer(x))
            if self.dropout is not None:
                x = self.dropout(x)
        return self.layers[-1](x)
