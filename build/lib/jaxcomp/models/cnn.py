"""Convolutional reference models: LeNet-5, a BatchNorm residual CNN and a
depthwise-separable compact CNN (our "compact network design" baseline).

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp.models.cnn import LeNet5
    >>> v = LeNet5().init(jax.random.key(0), jnp.ones((1, 28, 28, 1)))
    >>> v["params"]["Conv_1"]["kernel"].shape
    (5, 5, 6, 16)
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp
from flax import nnx

LENET5_VARIANTS = {
    # conv channels, dense widths
    "classic": ((6, 16), (120, 84)),
    "caffe": ((20, 50), (500,)),
}


class LeNet5(nn.Module):
    """LeNet-5: two 5×5 convs with 2×2 max-pooling, then dense layers.

    ``variant="classic"`` is 6-16-120-84; ``"caffe"`` is 20-50-500.
    Layers: ``Conv_0``, ``Conv_1``, ``Dense_0`` … .
    """

    variant: str = "classic"
    num_classes: int = 10

    @nn.compact
    def __call__(self, x, train: bool = False):
        convs, denses = LENET5_VARIANTS[self.variant]
        x = nn.relu(nn.Conv(convs[0], (5, 5), padding="SAME")(x))
        x = nn.max_pool(x, (2, 2), (2, 2))
        x = nn.relu(nn.Conv(convs[1], (5, 5), padding="VALID")(x))
        x = nn.max_pool(x, (2, 2), (2, 2))
        x = x.reshape((x.shape[0], -1))
        for f in denses:
            x = nn.relu(nn.Dense(f)(x))
        return nn.Dense(self.num_classes)(x)


class ResidualBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus identity (or 1×1 projection) shortcut."""

    channels: int
    stride: int = 1

    @nn.compact
    def __call__(self, x, train: bool = False):
        bn = lambda name: nn.BatchNorm(use_running_average=not train, momentum=0.9, name=name)
        y = nn.Conv(self.channels, (3, 3), (self.stride, self.stride), padding="SAME",
                    use_bias=False, name="conv1")(x)
        y = nn.relu(bn("bn1")(y))
        y = nn.Conv(self.channels, (3, 3), padding="SAME", use_bias=False, name="conv2")(y)
        y = bn("bn2")(y)
        if self.stride != 1 or x.shape[-1] != self.channels:
            x = nn.Conv(self.channels, (1, 1), (self.stride, self.stride), use_bias=False,
                        name="proj")(x)
            x = bn("proj_bn")(x)
        return nn.relu(x + y)


class ResCNN(nn.Module):
    """A small CNN with BatchNorm and residual blocks (stem, one block per stage)."""

    channels: Sequence[int] = (16, 32)
    num_classes: int = 10

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(self.channels[0], (3, 3), padding="SAME", use_bias=False, name="stem")(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, name="stem_bn")(x)
        x = nn.relu(x)
        for i, c in enumerate(self.channels):
            x = ResidualBlock(c, stride=1 if i == 0 else 2, name=f"block{i}")(x, train)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, name="head")(x)


class DSCNN(nn.Module):
    """A compact depthwise-separable CNN (MobileNet-style blocks)."""

    channels: Sequence[int] = (16, 32, 64)
    num_classes: int = 10

    @nn.compact
    def __call__(self, x, train: bool = False):
        bn = lambda name: nn.BatchNorm(use_running_average=not train, momentum=0.9, name=name)
        x = nn.relu(bn("stem_bn")(nn.Conv(self.channels[0], (3, 3), padding="SAME",
                                          use_bias=False, name="stem")(x)))
        for i, c in enumerate(self.channels[1:]):
            cin = x.shape[-1]
            x = nn.Conv(cin, (3, 3), (2, 2), padding="SAME", feature_group_count=cin,
                        use_bias=False, name=f"dw{i}")(x)
            x = nn.relu(bn(f"dw{i}_bn")(x))
            x = nn.Conv(c, (1, 1), use_bias=False, name=f"pw{i}")(x)
            x = nn.relu(bn(f"pw{i}_bn")(x))
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, name="head")(x)


class NNXCNN(nnx.Module):
    """NNX CNN with BatchNorm and one residual block: conv-BN-ReLU, block, pool, dense."""

    def __init__(self, in_channels: int = 1, channels: int = 16, num_classes: int = 10, *,
                 rngs: nnx.Rngs):
        self.stem = nnx.Conv(in_channels, channels, (3, 3), use_bias=False, rngs=rngs)
        self.stem_bn = nnx.BatchNorm(channels, momentum=0.9, rngs=rngs)
        self.conv1 = nnx.Conv(channels, channels, (3, 3), use_bias=False, rngs=rngs)
        self.bn1 = nnx.BatchNorm(channels, momentum=0.9, rngs=rngs)
        self.conv2 = nnx.Conv(channels, channels, (3, 3), use_bias=False, rngs=rngs)
        self.bn2 = nnx.BatchNorm(channels, momentum=0.9, rngs=rngs)
        self.head = nnx.Linear(channels, num_classes, rngs=rngs)

    def __call__(self, x):
        x = nnx.relu(self.stem_bn(self.stem(x)))
        y = nnx.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        x = nnx.relu(x + y)
        return self.head(jnp.mean(x, axis=(1, 2)))
