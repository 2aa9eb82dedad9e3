"""Calibration-based post-training quantization as pure functions.

Per layer (kernels ``(in, out)`` as Flax stores them):

* :func:`gptq` — GPTQ with lazy block updates, group-wise scales, act-order
  (static groups), dead-input handling and a clear error for a singular Hessian;
* :func:`awq` — AWQ's activation-aware scale search (from statistics only);
* :func:`smooth_scales` / :func:`w8a8` — SmoothQuant;
* :func:`random_hadamard` and the ``rotate_*`` helpers — QuaRot-style rotations;
* :func:`per_token` / :func:`per_tensor` — activation fake-quant;
* :mod:`~jaxcomp.quant.calib.fold` — folding scales into the previous op;
* :mod:`~jaxcomp.quant.calib.stats` — ``X^T X`` / ``|x|`` statistics accumulated
  over batches in float32 (:func:`hessian_init` / :func:`hessian_update` /
  :func:`hessian_finalize`).

Per model, :func:`quantize_blocks` runs GPTQ's sequential block-by-block pass
with only one block's activations alive. **The block contract**: a block is
``Block(apply, params, linears)`` where ``apply(params, x, tap) -> y`` calls
``v = tap(name, v)`` on the input of each linear in ``linears`` (its kernel's
path in ``params``) right before the matmul. For an NNX model, ``apply`` can be
``lambda state, x, tap: nnx.merge(graphdef, state)(x, tap=tap)`` with the
module's ``__call__`` taking ``tap=no_tap``.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp.quant import calib
    >>> def block(p, x, tap):
    ...     h = x / jnp.sqrt(jnp.mean(x * x, -1, keepdims=True) + 1e-6)
    ...     u = jax.nn.gelu(tap("mlp/up/kernel", h) @ p["mlp"]["up"]["kernel"])
    ...     return x + tap("mlp/down/kernel", u) @ p["mlp"]["down"]["kernel"]
    >>> k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    >>> p = {"mlp": {"up": {"kernel": jax.random.normal(k1, (32, 64)) / 6},
    ...              "down": {"kernel": jax.random.normal(k2, (64, 32)) / 8}}}
    >>> blocks = [calib.Block(block, p, ("mlp/up/kernel", "mlp/down/kernel"))] * 2
    >>> x = jax.random.normal(k3, (8, 16, 32))
    >>> res = calib.quantize_blocks(blocks, [x], "gptq", bits=4, group_size=32)
    >>> float(calib.output_error(blocks, res.blocks, x)) < 0.1
    True
"""

from jaxcomp.quant.calib import fold, rotate, stats
from jaxcomp.quant.calib._common import dequant, rtn
from jaxcomp.quant.calib.actquant import per_channel_weight, per_tensor, per_tensor_scale, per_token
from jaxcomp.quant.calib.awq import AWQResult, awq, effective_kernel
from jaxcomp.quant.calib.driver import (
    Block,
    CalibResult,
    act_quant_tap,
    layer_inputs,
    no_tap,
    output_error,
    quantize_blocks,
    quantize_layer,
    run_blocks,
)
from jaxcomp.quant.calib.gptq import effective_block_size, gptq
from jaxcomp.quant.calib.rotate import (
    center_writer,
    fold_norm_into_linear,
    hadamard,
    online_rotate,
    random_hadamard,
    rotate_linear_pair,
    rotate_reader,
    rotate_writer,
)
from jaxcomp.quant.calib.smooth import fold_smoothing, smooth_scales, w8a8
from jaxcomp.quant.calib.stats import (
    HessianAccumulator,
    LayerStats,
    hessian,
    hessian_accumulator,
    hessian_finalize,
    hessian_init,
    hessian_of,
    hessian_update,
)

__all__ = [
    "AWQResult", "Block", "CalibResult", "HessianAccumulator", "LayerStats", "act_quant_tap", "awq",
    "center_writer", "dequant", "effective_block_size", "effective_kernel", "fold",
    "fold_norm_into_linear", "fold_smoothing", "gptq", "hadamard", "hessian",
    "hessian_accumulator",
    "hessian_finalize", "hessian_init", "hessian_of", "hessian_update", "layer_inputs",
    "no_tap", "online_rotate", "output_error", "per_channel_weight", "per_tensor",
    "per_tensor_scale", "per_token", "quantize_blocks", "quantize_layer", "random_hadamard",
    "rotate", "rotate_linear_pair", "rotate_reader", "rotate_writer", "rtn", "run_blocks",
    "smooth_scales", "stats", "w8a8",
]
