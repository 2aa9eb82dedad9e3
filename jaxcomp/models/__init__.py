"""Reference models (linen, and NNX for the MLP, the BatchNorm CNN, the GPT and the ViT)
and a registry.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp.models import get_model
    >>> model = get_model("lenet300", input_shape=(28, 28, 1), num_classes=10)
    >>> params, _ = model.init(jax.random.key(0), jnp.ones((1, 28, 28, 1)))
    >>> sorted(params)
    ['Dense_0', 'Dense_1', 'Dense_2']
"""

from __future__ import annotations

import math
from typing import Any

from flax import nnx

from jaxcomp.core.errors import ConfigError, check_choice
from jaxcomp.flax import Model, from_linen, from_nnx
from jaxcomp.models.cnn import DSCNN, LENET5_VARIANTS, NNXCNN, LeNet5, ResCNN, ResidualBlock
from jaxcomp.models.gpt import GPT, generate
from jaxcomp.models.mlp import MLP, NNXMLP
from jaxcomp.models.vit import ViT

MODELS = ("mlp", "lenet300", "lenet5", "lenet5_caffe", "rescnn", "dscnn", "nnx_mlp", "nnx_cnn",
          "gpt", "vit")


def get_model(name: str, *, input_shape: tuple[int, ...], num_classes: int = 10,
              **kwargs: Any) -> Model:
    """Build a reference model by name as a :class:`jaxcomp.flax.Model`.

    Names: ``mlp`` (``features=``), ``lenet300`` (784-300-100-10), ``lenet5``,
    ``lenet5_caffe``, ``rescnn``, ``dscnn``, ``nnx_mlp``, ``nnx_cnn``, ``gpt`` (byte
    tokens ``(B, T)`` to logits ``(B, T, 256)``; ``input_shape=(T,)`` gives the default
    ``context``; see :class:`jaxcomp.models.gpt.GPT` for its keywords; ``num_classes`` is
    not used), ``vit`` (:class:`jaxcomp.models.vit.ViT`).
    """
    check_choice("model.name", name, MODELS)
    image = len(input_shape) == 3
    if name == "gpt":
        kw = {"context": int(input_shape[0]) if len(input_shape) == 1 else 256, **kwargs}
        nnx.eval_shape(lambda: GPT(rngs=nnx.Rngs(0), **kw))  # bad keywords fail here
        return from_nnx(lambda rngs: GPT(rngs=rngs, **kw), name)
    if name == "vit":
        if not image:
            raise ConfigError(f"model.name='vit' needs image inputs (H, W, C); the dataset "
                              f"gives inputs of shape {tuple(input_shape)}")
        make = lambda rngs: ViT(tuple(input_shape), num_classes=num_classes, rngs=rngs, **kwargs)
        nnx.eval_shape(lambda: make(nnx.Rngs(0)))
        return from_nnx(make, name)
    if name in ("lenet5", "lenet5_caffe", "rescnn", "dscnn", "nnx_cnn") and not image:
        raise ConfigError(f"model.name={name!r} needs image inputs (H, W, C); the dataset gives "
                          f"inputs of shape {tuple(input_shape)}")
    if name == "mlp":
        return from_linen(MLP(num_classes=num_classes, **kwargs), name)
    if name == "lenet300":
        return from_linen(MLP((300, 100), num_classes, **kwargs), name)
    if name == "lenet5":
        return from_linen(LeNet5("classic", num_classes), name)
    if name == "lenet5_caffe":
        return from_linen(LeNet5("caffe", num_classes), name)
    if name == "rescnn":
        return from_linen(ResCNN(num_classes=num_classes, **kwargs), name)
    if name == "dscnn":
        return from_linen(DSCNN(num_classes=num_classes, **kwargs), name)
    if name == "nnx_mlp":
        d = math.prod(input_shape)
        return from_nnx(lambda rngs: NNXMLP(d, num_classes=num_classes, rngs=rngs, **kwargs),
                        name)
    return from_nnx(lambda rngs: NNXCNN(input_shape[-1], num_classes=num_classes, rngs=rngs,
                                        **kwargs), name)


__all__ = ["DSCNN", "GPT", "LENET5_VARIANTS", "MLP", "MODELS", "NNXCNN", "NNXMLP", "LeNet5",
           "ResCNN", "ResidualBlock", "ViT", "generate", "get_model"]
