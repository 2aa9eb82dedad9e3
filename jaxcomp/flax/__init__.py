"""Flax adapters: linen and NNX models behind one :class:`Model` handle, and
module-call interception by path."""

from jaxcomp.flax.intercept import intercept, intercept_linen, intercept_nnx, nnx_interception
from jaxcomp.flax.linen import from_linen
from jaxcomp.flax.model import Model
from jaxcomp.flax.nnx import from_nnx, split_params

__all__ = ["Model", "from_linen", "from_nnx", "intercept", "intercept_linen", "intercept_nnx",
           "nnx_interception", "split_params"]
