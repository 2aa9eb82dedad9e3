"""Factorized layers: pure forward functions and their linen modules.

* low-rank Dense: ``x @ u @ v + b`` (two matmuls);
* Tucker conv: 1×1 conv (cin→r_in), k×k conv (r_in→r_out), 1×1 conv (r_out→cout);
* CP conv: 1×1 conv (cin→R), depthwise kh×1, depthwise 1×kw, 1×1 conv (R→cout).

Param names (the same in linen, NNX and in models converted by
:mod:`jaxcomp.decompose.factorize`): low-rank ``u, v``; Tucker ``first, core, last``;
CP ``first, vertical, horizontal, last``; plus ``bias``.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp.decompose.layers import LowRankDense
    >>> m = LowRankDense(features=3, rank=2)
    >>> v = m.init(jax.random.key(0), jnp.ones((1, 5)))
    >>> jax.tree.map(jnp.shape, v["params"])
    {'bias': (3,), 'u': (5, 2), 'v': (2, 3)}
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from jaxcomp.core.errors import ConfigError

Padding = str | Sequence[tuple[int, int]]
_DN = ("NHWC", "HWIO", "NHWC")


def lowrank_dense(x: jax.Array, u: jax.Array, v: jax.Array,
                  bias: jax.Array | None = None) -> jax.Array:
    """``(x @ u) @ v + bias``."""
    y = (x @ u) @ v
    return y if bias is None else y + bias


def _pointwise(x: jax.Array, w: jax.Array) -> jax.Array:
    return jnp.einsum("...c,cr->...r", x, w)


def split_padding(padding: Padding, what: str = "conv") -> tuple[Any, Any]:
    """Padding for the kh×1 and 1×kw convs of a separable kernel."""
    if isinstance(padding, str):
        if padding.upper() not in ("SAME", "VALID"):
            raise ConfigError(f"{what}: padding {padding!r} not supported by factorized convs; "
                              "allowed: 'SAME', 'VALID' or explicit pairs")
        return padding.upper(), padding.upper()
    pads = [tuple(p) for p in padding]
    if len(pads) != 2:
        raise ConfigError(f"{what}: padding got {padding!r}; expected two (lo, hi) pairs")
    return [pads[0], (0, 0)], [(0, 0), pads[1]]


def _conv(x, k, strides, padding, groups=1):
    return lax.conv_general_dilated(x, k, tuple(strides), padding, dimension_numbers=_DN,
                                    feature_group_count=groups)


def _batched(fn: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
    if x.ndim == 3:
        return fn(x[None])[0]
    lead = x.shape[:-3]
    y = fn(x.reshape(-1, *x.shape[-3:]))
    return y.reshape(*lead, *y.shape[1:])


def tucker_conv(x: jax.Array, first: jax.Array, core: jax.Array, last: jax.Array,
                bias: jax.Array | None = None, *, strides: Sequence[int] = (1, 1),
                padding: Padding = "SAME") -> jax.Array:
    """``first: (cin, r_in)``, ``core: (kh, kw, r_in, r_out)``, ``last: (r_out, cout)``."""
    if not isinstance(padding, str):
        padding = [tuple(p) for p in padding]
    y = _batched(lambda z: _conv(_pointwise(z, first), core, strides, padding), x)
    y = _pointwise(y, last)
    return y if bias is None else y + bias


def cp_conv(x: jax.Array, first: jax.Array, vertical: jax.Array, horizontal: jax.Array,
            last: jax.Array, bias: jax.Array | None = None, *, strides: Sequence[int] = (1, 1),
            padding: Padding = "SAME") -> jax.Array:
    """``first: (cin, R)``, ``vertical: (kh, R)``, ``horizontal: (kw, R)``, ``last: (R, cout)``."""
    pad_h, pad_w = split_padding(padding)
    r = first.shape[1]
    kv = vertical[:, None, None, :]
    kh = horizontal[None, :, None, :]

    def body(z):
        z = _pointwise(z, first)
        z = _conv(z, kv, (strides[0], 1), pad_h, groups=r)
        return _conv(z, kh, (1, strides[1]), pad_w, groups=r)

    y = _pointwise(_batched(body, x), last)
    return y if bias is None else y + bias


def cp_layer_factors(weights: jax.Array, factors: Sequence[jax.Array]) -> dict[str, jax.Array]:
    """CP factors of a ``(kh, kw, cin, cout)`` kernel as CP-conv params
    (the weights are folded into ``last``)."""
    fh, fw, fin, fout = factors
    return {"first": fin, "vertical": fh, "horizontal": fw, "last": (fout * weights).T}


def _check_conv(module_name: str, kernel_size, strides, dilation=1, groups=1):
    if len(tuple(kernel_size)) != 2:
        raise ConfigError(f"{module_name}: factorized convs are 2-D; kernel_size={kernel_size}")
    if groups != 1:
        raise ConfigError(f"{module_name}: feature_group_count={groups} not supported")
    if dilation not in (1, None, (1, 1)):
        raise ConfigError(f"{module_name}: kernel_dilation={dilation} not supported")


def _strides(strides: int | Sequence[int] | None) -> tuple[int, int]:
    if strides is None:
        return (1, 1)
    if isinstance(strides, int):
        return (strides, strides)
    return tuple(strides)


# --- param creation shared by the linen modules and converted (intercepted) layers ---

def lowrank_params(mod: nn.Module, cin: int, features: int, rank: int,
                   use_bias: bool = True) -> dict[str, Any]:
    init = nn.initializers.lecun_normal()
    p = {"u": mod.param("u", init, (cin, rank)), "v": mod.param("v", init, (rank, features))}
    p["bias"] = mod.param("bias", nn.initializers.zeros, (features,)) if use_bias else None
    return p


def tucker_params(mod: nn.Module, cin: int, features: int, kernel_size: Sequence[int],
                  ranks: Sequence[int], use_bias: bool = True) -> dict[str, Any]:
    init = nn.initializers.lecun_normal()
    r_in, r_out = ranks
    p = {"first": mod.param("first", init, (cin, r_in)),
         "core": mod.param("core", init, (*kernel_size, r_in, r_out)),
         "last": mod.param("last", init, (r_out, features))}
    p["bias"] = mod.param("bias", nn.initializers.zeros, (features,)) if use_bias else None
    return p


def cp_params(mod: nn.Module, cin: int, features: int, kernel_size: Sequence[int],
              rank: int, use_bias: bool = True) -> dict[str, Any]:
    init = nn.initializers.lecun_normal()
    normal = nn.initializers.normal(1.0)
    p = {"first": mod.param("first", init, (cin, rank)),
         "vertical": mod.param("vertical", normal, (kernel_size[0], rank)),
         "horizontal": mod.param("horizontal", normal, (kernel_size[1], rank)),
         "last": mod.param("last", init, (rank, features))}
    p["bias"] = mod.param("bias", nn.initializers.zeros, (features,)) if use_bias else None
    return p


class LowRankDense(nn.Module):
    """A Dense layer as two matmuls through a rank-``rank`` bottleneck."""

    features: int
    rank: int
    use_bias: bool = True

    @nn.compact
    def __call__(self, x):
        p = lowrank_params(self, x.shape[-1], self.features, self.rank, self.use_bias)
        return lowrank_dense(x, p["u"], p["v"], p["bias"])


class TuckerConv(nn.Module):
    """A conv as 1×1 → k×k → 1×1 convs (Tucker-2 ranks ``(r_in, r_out)``)."""

    features: int
    kernel_size: Sequence[int]
    ranks: Sequence[int]
    strides: Sequence[int] = (1, 1)
    padding: Padding = "SAME"
    use_bias: bool = True

    @nn.compact
    def __call__(self, x):
        _check_conv(self.name or "TuckerConv", self.kernel_size, self.strides)
        p = tucker_params(self, x.shape[-1], self.features, self.kernel_size, self.ranks,
                          self.use_bias)
        return tucker_conv(x, p["first"], p["core"], p["last"], p["bias"],
                           strides=_strides(self.strides), padding=self.padding)


class CPConv(nn.Module):
    """A conv as 1×1 → depthwise kh×1 → depthwise 1×kw → 1×1 (CP rank ``rank``)."""

    features: int
    kernel_size: Sequence[int]
    rank: int
    strides: Sequence[int] = (1, 1)
    padding: Padding = "SAME"
    use_bias: bool = True

    @nn.compact
    def __call__(self, x):
        _check_conv(self.name or "CPConv", self.kernel_size, self.strides)
        p = cp_params(self, x.shape[-1], self.features, self.kernel_size, self.rank,
                      self.use_bias)
        return cp_conv(x, p["first"], p["vertical"], p["horizontal"], p["last"], p["bias"],
                       strides=_strides(self.strides), padding=self.padding)
