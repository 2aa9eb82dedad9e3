"""The block-by-block calibration pass (GPTQ's sequential scheme) with bounded memory.

A model is a sequence of :class:`Block` ``(apply, params, linears)``:

* ``apply(params, x, tap) -> y`` runs the block on ``x``; it must call
  ``v = tap(name, v)`` on the *input* of every linear named in ``linears``,
  right before the matmul, and use the returned value (``name`` is the
  linear's kernel path in ``params``, e.g. ``"attn/q/kernel"``);
* ``params`` is the block's parameter pytree (nested dicts, linen params or an
  NNX ``State``; kernels ``(in, out)``);
* ``linears`` lists the kernel paths to quantize.

:func:`quantize_blocks` feeds block 0 the calibration batches and, for each
block ``i``: (1) runs block ``i`` once with a tap that accumulates every
linear's :class:`~jaxcomp.quant.calib.stats.LayerStats` (``X^T X``, ``|x|``
sums and maxima, in float32; the tapped activations are not kept; linears fed
the same value, such as ``q``/``k``/``v``, share one accumulation), (2)
quantizes the block's linears from those statistics (all from the block's
float-weight activations, as GPTQ does without its "true sequential" option),
(3) re-runs block ``i`` with the quantized weights to make block ``i+1``'s
inputs. Both passes are one compiled program per batch that streams the batch
through the block in chunks of samples (:mod:`~jaxcomp.quant.calib.passes`: the
block must treat the samples of a batch's leading axis independently), and the
re-run writes each output batch over the driver's own input batch: only one
block's activations (plus one chunk's temporaries) are alive at a time; the
caller's batches are read, never overwritten.

The same ``tap`` is how a model exposes its linear inputs to anything else:
:func:`act_quant_tap` fake-quantizes them (W4A4 evaluation), and
:func:`no_tap` is the identity for plain use.

Example:
    >>> import jax, jax.numpy as jnp
    >>> def mlp(p, x, tap):
    ...     h = jax.nn.gelu(tap("up/kernel", x) @ p["up"]["kernel"])
    ...     return x + tap("down/kernel", h) @ p["down"]["kernel"]
    >>> k = jax.random.split(jax.random.key(0), 3)
    >>> blocks = [Block(mlp, {"up": {"kernel": jax.random.normal(k[i], (16, 32)) / 4},
    ...                       "down": {"kernel": jax.random.normal(k[i + 1], (32, 16)) / 6}},
    ...                 ("up/kernel", "down/kernel")) for i in range(2)]
    >>> x = [jax.random.normal(k[2], (4, 8, 16))]           # one calibration batch
    >>> res = quantize_blocks(blocks, x, "gptq", bits=4, group_size=16)
    >>> sorted(res.info[1]), res.info[0]["up/kernel"]["codes"].dtype
    (['down/kernel', 'up/kernel'], dtype('int8'))
    >>> y = run_blocks(blocks, x[0]); yq = run_blocks(res.blocks, x[0])
    >>> bool(jnp.linalg.norm(yq - y) < 0.1 * jnp.linalg.norm(y))
    True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxcomp.core import paths as _paths
from jaxcomp.core.errors import ConfigError, check_choice
from jaxcomp.quant.calib._common import rtn
from jaxcomp.quant.calib.actquant import per_token
from jaxcomp.quant.calib.awq import awq, effective_kernel
from jaxcomp.quant.calib.gptq import gptq
from jaxcomp.quant.calib.passes import CHUNK_TOKENS, no_tap, reduce_taps
from jaxcomp.quant.calib.stats import LayerStats, hessian, stats_init, stats_update

Tap = Callable[[str, jax.Array], jax.Array]
METHODS = ("gptq", "rtn", "awq")


class Block(NamedTuple):
    """One block: ``apply(params, x, tap) -> y``, its params, its linears' kernel paths."""

    apply: Callable[[Any, jax.Array, Tap], jax.Array]
    params: Any
    linears: Sequence[str]


class CalibResult(NamedTuple):
    """Blocks with quantized (dequantized float) kernels, and per block
    ``{path: {"codes", "scales", "zeros"[, "awq_scales"]}}``."""

    blocks: list[Block]
    info: list[dict[str, dict[str, jax.Array]]]


def act_quant_tap(bits: int, *, sym: bool = True) -> Tap:
    """A tap that fake-quantizes every tapped linear input per token."""
    return lambda name, x: per_token(x, bits, sym=sym)


def run_blocks(blocks: Sequence[Block], x: jax.Array, tap: Tap = no_tap) -> jax.Array:
    """Run the blocks one after the other (not jitted)."""
    for b in blocks:
        x = b.apply(b.params, x, tap)
    return x


def quantize_layer(method: str | Callable, w: jax.Array, st: LayerStats, path: str,
                   **kw: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Quantize one kernel from its statistics; ``(float kernel to use, info)``."""
    bits, gs, sym = kw["bits"], kw["group_size"], kw["sym"]
    if callable(method):
        return method(w, st, path)
    if method == "gptq":
        wq, q, s, z = gptq(w, hessian(st), bits=bits, group_size=gs, sym=sym,
                           damp=kw["damp"], block_size=kw["block_size"],
                           act_order=kw["act_order"], path=path)
        return wq, {"codes": q, "scales": s, "zeros": z}
    if method == "rtn":
        from jaxcomp.quant.calib._common import check_group, check_weight_bits
        wq, q, s, z = rtn(w, bits=check_weight_bits(bits, path),
                          group_size=check_group(gs, w.shape[0], path), sym=sym)
        return wq, {"codes": q, "scales": s, "zeros": z}
    r = awq(w, st, bits=bits, group_size=gs, sym=sym, n_grid=kw["n_grid"], path=path)
    return effective_kernel(r), {"codes": r.codes, "scales": r.qscales, "zeros": r.zeros,
                                 "awq_scales": r.scales}


def quantize_blocks(blocks: Sequence[Block], x_calib: Sequence[jax.Array] | jax.Array,
                    method: str | Callable = "gptq", *, bits: int = 4,
                    group_size: int | None = 128, sym: bool = False, damp: float = 0.01,
                    block_size: int = 128, act_order: bool = False,
                    n_grid: int = 20, chunk_tokens: int | None = CHUNK_TOKENS) -> CalibResult:
    """Quantize every block's linears in sequence (see the module docstring).

    Args:
      blocks: the model as a sequence of :class:`Block`.
      x_calib: calibration batches (a list of ``(..., d)`` arrays, or one array
        that is one batch); block 0's inputs.
      method: ``"gptq"``, ``"rtn"``, ``"awq"`` (the returned float kernel is
        AWQ's ``w_q / s``, same function as folding ``1/s`` into the previous op;
        the scales are in ``info`` as ``"awq_scales"`` for folding), or a
        callable ``(kernel, LayerStats, path) -> (float kernel, info dict)``.
      bits, group_size, sym: the weight quantizer; damp, block_size, act_order:
        GPTQ's options; n_grid: AWQ's grid size.
      chunk_tokens: tokens per chunk when streaming a batch through a block
        (``None``: whole batches; see the module docstring).

    Returns:
      a :class:`CalibResult` (the original blocks are left unchanged).
    """
    if not callable(method):
        check_choice("quantize_blocks.method", method, METHODS)
    xs = [x_calib] if isinstance(x_calib, jax.Array) else list(x_calib)
    if not xs:
        raise ConfigError("quantize_blocks.x_calib: got no calibration batch; at least one "
                          "is needed")
    kw = dict(bits=bits, group_size=group_size, sym=sym, damp=damp, block_size=block_size,
              act_order=act_order, n_grid=n_grid)
    out_blocks, infos = [], []
    for i, blk in enumerate(blocks):
        leaves = _paths.path_dict(blk.params)
        names = tuple(blk.linears)
        missing = [p for p in names if p not in leaves]
        if missing:
            raise ConfigError(f"blocks[{i}].linears: {missing} not in the block's params; "
                              f"kernels there: {[p for p in leaves if p.endswith('kernel')]}")
        stats, _ = reduce_taps(blk.apply, blk.params, xs, names, stats_init, stats_update,
                               chunk_tokens=chunk_tokens, where=f"blocks[{i}]")
        new, info = {}, {}
        for p in names:
            wq, info[p] = quantize_layer(method, leaves[p], stats[p], f"blocks[{i}]/{p}", **kw)
            new[p] = wq.astype(leaves[p].dtype)
        del stats
        qparams = _paths.replace(blk.params, new)
        qblk = Block(blk.apply, qparams, names)
        if i + 1 < len(blocks):   # block i+1's inputs, over block i's (when they are ours)
            _, xs = reduce_taps(blk.apply, qparams, xs, (), outputs=True, donate=i > 0,
                                chunk_tokens=chunk_tokens)
        out_blocks.append(qblk)
        infos.append(info)
    return CalibResult(out_blocks, infos)


def layer_inputs(block: Block, x: jax.Array) -> dict[str, jax.Array]:
    """Every tapped linear input of one block run (for tests and inspection)."""
    got: dict[str, jax.Array] = {}

    def tap(name, v):
        got[name] = v
        return v

    block.apply(block.params, x, tap)
    return got


def output_error(blocks: Sequence[Block], qblocks: Sequence[Block], x: jax.Array,
                 tap: Tap = no_tap) -> jax.Array:
    """Relative error ``||f_q(x) - f(x)|| / ||f(x)||`` of the quantized blocks."""
    y = run_blocks(blocks, x)
    return jnp.linalg.norm(run_blocks(qblocks, x, tap) - y) / jnp.linalg.norm(y)
