"""The ResNet twin pair shared by the NNX parity tests: a user's own NNX ResNet
(BatchNorm, a 1x1 projection shortcut) and its linen twin with the same param names."""

import flax.linen as nn
import jax
from flax import nnx

from jaxcomp.flax import from_linen, from_nnx

SHAPE, CLASSES = (8, 8, 3), 4


class NBlock(nnx.Module):
    def __init__(self, cin, cout, stride, rngs):
        self.conv1 = nnx.Conv(cin, cout, (3, 3), strides=stride, use_bias=False, rngs=rngs)
        self.bn1 = nnx.BatchNorm(cout, momentum=0.9, rngs=rngs)
        self.conv2 = nnx.Conv(cout, cout, (3, 3), use_bias=False, rngs=rngs)
        self.bn2 = nnx.BatchNorm(cout, momentum=0.9, rngs=rngs)
        self.proj = cin != cout or stride != 1
        if self.proj:
            self.proj_conv = nnx.Conv(cin, cout, (1, 1), strides=stride, use_bias=False,
                                      rngs=rngs)
            self.proj_bn = nnx.BatchNorm(cout, momentum=0.9, rngs=rngs)

    def __call__(self, x):
        h = nnx.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        sc = self.proj_bn(self.proj_conv(x)) if self.proj else x
        return nnx.relu(h + sc)


class NResNet(nnx.Module):
    def __init__(self, rngs):
        self.stem_conv = nnx.Conv(3, 8, (3, 3), use_bias=False, rngs=rngs)
        self.stem_bn = nnx.BatchNorm(8, momentum=0.9, rngs=rngs)
        self.block0 = NBlock(8, 8, 1, rngs)
        self.block1 = NBlock(8, 16, 2, rngs)
        self.head = nnx.Linear(16, CLASSES, rngs=rngs)

    def __call__(self, x):
        x = nnx.relu(self.stem_bn(self.stem_conv(x)))
        x = self.block1(self.block0(x))
        return self.head(x.mean(axis=(1, 2)))


class LBlock(nn.Module):
    cout: int
    stride: int

    @nn.compact
    def __call__(self, x, train):
        bn = lambda name: nn.BatchNorm(use_running_average=not train, momentum=0.9, name=name)
        h = nn.Conv(self.cout, (3, 3), self.stride, use_bias=False, name="conv1")(x)
        h = nn.relu(bn("bn1")(h))
        h = bn("bn2")(nn.Conv(self.cout, (3, 3), use_bias=False, name="conv2")(h))
        sc = x
        if x.shape[-1] != self.cout or self.stride != 1:
            sc = nn.Conv(self.cout, (1, 1), self.stride, use_bias=False, name="proj_conv")(x)
            sc = bn("proj_bn")(sc)
        return nn.relu(h + sc)


class LResNet(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(8, (3, 3), use_bias=False, name="stem_conv")(x)
        x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9,
                                 name="stem_bn")(x))
        x = LBlock(8, 1, name="block0")(x, train)
        x = LBlock(16, 2, name="block1")(x, train)
        return nn.Dense(CLASSES, name="head")(x.mean(axis=(1, 2)))


def _perturb(tree, key):
    """Non-trivial BatchNorm scales, shifts and running statistics."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    out = []
    for i, (path, v) in enumerate(leaves):
        name = str(path[-1].key)
        k = jax.random.fold_in(key, i)
        if name in ("scale", "var"):
            v = jax.random.uniform(k, v.shape, minval=0.5, maxval=1.5)
        elif name == "mean" or (name == "bias" and "bn" in str(path[-2].key)):
            v = 0.3 * jax.random.normal(k, v.shape)
        out.append(v)
    return jax.tree_util.tree_unflatten(treedef, out)


def make_twins(batch: int = 16):
    """``(nnx_model, nnx_params, nnx_state, linen_model, params, model_state, x)`` with the
    same (perturbed) variables in both; ``params`` is the NNX params' pure dict."""
    nmodel = from_nnx(NResNet, name="nresnet")
    n_params, n_state = nmodel.init(jax.random.key(0), None)
    pp = _perturb(nnx.to_pure_dict(n_params), jax.random.key(1))
    ps = _perturb(nnx.to_pure_dict(n_state), jax.random.key(2))
    nnx.replace_by_pure_dict(n_params, pp)
    nnx.replace_by_pure_dict(n_state, ps)
    lmodel = from_linen(LResNet())
    x = jax.random.normal(jax.random.key(3), (batch, *SHAPE))
    l_params, _ = lmodel.init(jax.random.key(0), x[:1])
    assert jax.tree.structure(l_params) == jax.tree.structure(pp)  # the same names
    return nmodel, n_params, n_state, lmodel, pp, {"batch_stats": ps}, x
