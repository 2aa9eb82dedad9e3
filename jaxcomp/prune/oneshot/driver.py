"""One-shot pruning of a whole model, block by block, through the calibration pass.

:func:`prune_blocks` runs :func:`jaxcomp.quant.calib.quantize_blocks`'s
sequential pass with a pruning method in place of a quantizer: block ``i``'s
linears get their input statistics from block ``i``'s inputs, which are the
outputs of the already *pruned* blocks ``0..i-1`` (as SparseGPT and Wanda do);
only one block's activations are alive at a time. Blocks follow the
:class:`jaxcomp.quant.calib.Block` contract.

Example (a small GPT through :mod:`jaxcomp.models.gpt_blocks`):
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp.models import get_model, gpt_blocks as gb
    >>> from jaxcomp.quant.calib import output_error
    >>> model = get_model("gpt", input_shape=(16,), num_layers=2, width=32, num_heads=4)
    >>> params, _ = model.init(jax.random.key(0), None)
    >>> blocks = gb.gpt_blocks(model, params)
    >>> x = [gb.embed(model, params, jax.random.randint(jax.random.key(1), (8, 16), 0, 256))]
    >>> res = prune_blocks(blocks, x, "sparsegpt", nm="2:4")
    >>> res.sparsity, sorted(res.masks[0])[:2]
    (0.5, ['blocks/0/attn/k/kernel', 'blocks/0/attn/o/kernel'])
    >>> mag = prune_blocks(blocks, x, "magnitude", nm="2:4")
    >>> bool(output_error(blocks, res.blocks, x[0]) < output_error(blocks, mag.blocks, x[0]))
    True
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxcomp.core import paths as _paths
from jaxcomp.core.errors import ConfigError, check_choice, check_number
from jaxcomp.prune.oneshot import layer as L
from jaxcomp.prune.oneshot.owl import owl_sparsities
from jaxcomp.quant.calib import Block, quantize_blocks
from jaxcomp.quant.calib.stats import LayerStats, hessian

METHODS = ("magnitude", "wanda", "sparsegpt")


class PruneResult(NamedTuple):
    """Pruned blocks, their keep masks ``[{path: bool (in, out)}]`` per block, the
    per-block target sparsities, the achieved overall sparsity of the pruned
    linears, the seconds spent in the per-layer pruning (statistics excluded)
    and in the whole pass."""

    blocks: list[Block]
    masks: list[dict[str, jax.Array]]
    block_sparsity: list[float]
    sparsity: float
    prune_seconds: float
    total_seconds: float


def _as_batches(x_calib: Any) -> list[jax.Array]:
    xs = [x_calib] if isinstance(x_calib, jax.Array | np.ndarray) else list(x_calib)
    if not xs:
        raise ConfigError("prune_blocks.x_calib: got no calibration batch; at least one is "
                          "needed")
    return [jnp.asarray(x) for x in xs]


def check_calib(blocks: Sequence[Block], xs: Sequence[jax.Array]) -> None:
    """ConfigError unless every batch has block 0's input shape ``(..., d)`` and a float
    dtype, and every tapped linear input matches its kernel's input dimension."""
    first = xs[0]
    for j, xb in enumerate(xs):
        if xb.ndim < 2 or not jnp.issubdtype(xb.dtype, jnp.floating):
            raise ConfigError(f"prune_blocks.x_calib[{j}]: got shape {tuple(xb.shape)} dtype "
                              f"{xb.dtype}; expected float activations (batch, ..., d) for "
                              "block 0 (embed tokens first)")
        if xb.shape[1:] != first.shape[1:] and xb.shape[-1] != first.shape[-1]:
            raise ConfigError(f"prune_blocks.x_calib[{j}]: shape {tuple(xb.shape)} does not "
                              f"match x_calib[0]'s {tuple(first.shape)} in the feature "
                              "dimension")
    blk = blocks[0]
    leaves = _paths.path_dict(blk.params)
    bad: list[str] = []

    def tap(name, v):
        if name in leaves and v.shape[-1] != leaves[name].shape[0]:
            bad.append(f"blocks[0]/{name}: input feature size {v.shape[-1]} but the kernel "
                       f"is {tuple(leaves[name].shape)} (needs {leaves[name].shape[0]})")
        return v
    try:
        jax.eval_shape(lambda p, x: blk.apply(p, x, tap), blk.params, first)
    except Exception as e:  # the block cannot run on these inputs at all
        raise ConfigError(f"prune_blocks.x_calib: batches of shape {tuple(first.shape)} do "
                          f"not fit block 0 ({type(e).__name__}: {str(e)[:200]}); expected "
                          "block 0's input activations (batch, seq, width)") from None
    if bad:
        raise ConfigError(f"prune_blocks.x_calib: shape {tuple(first.shape)}: {bad[0]}")


def _check_blocks(blocks: Sequence[Block], nm: Any, sparsities: Sequence[Any]) -> None:
    if not blocks:
        raise ConfigError("prune_blocks.blocks: got no block")
    for i, blk in enumerate(blocks):
        leaves = _paths.path_dict(blk.params)
        for p in blk.linears:
            if p not in leaves:
                raise ConfigError(f"blocks[{i}].linears: {p!r} not in the block's params; "
                                  f"kernels there: {[q for q in leaves if q.endswith('kernel')]}")
            L.check_pattern(leaves[p], f"blocks[{i}]/{p}", sparsities[i], nm)


def prune_blocks(blocks: Sequence[Block], x_calib: Sequence[jax.Array] | jax.Array,
                 method: str = "sparsegpt", *, sparsity: float | Sequence[float] | None = None,
                 nm: Any = None, damp: float = 0.01, block_size: int = 128,
                 owl_lambda: float | None = None, owl_m: float = 5.0) -> PruneResult:
    """Prune every block's linears in sequence with ``method``.

    Args:
      blocks: the model as :class:`~jaxcomp.quant.calib.Block` s.
      x_calib: block 0's input batches (a list of ``(batch, seq, d)`` arrays, or one).
      method: ``"magnitude"``, ``"wanda"`` or ``"sparsegpt"``.
      sparsity: unstructured fraction pruned in ``[0, 1)``: one number, or one per
        block; or
      nm: ``"2:4"``, ``"4:8"`` or ``(n, m)`` (N kept of every M consecutive inputs;
        M must divide every pruned layer's input dimension).
      damp, block_size: SparseGPT's dampening and lazy block (adaptive mask) size.
      owl_lambda: if given, OWL's non-uniform block sparsities around ``sparsity``
        (a number), ``λ = owl_lambda``, outlier threshold ``owl_m`` × mean score;
        costs one extra dense pass. Unstructured only.

    Returns:
      a :class:`PruneResult`; the input blocks are left unchanged.
    """
    check_choice("prune_blocks.method", method, METHODS)
    xs = _as_batches(x_calib)
    nmp = L.parse_nm(nm, "prune_blocks.nm")
    if nmp is not None and (sparsity is not None or owl_lambda is not None):
        raise ConfigError(f"prune_blocks: nm={nmp[0]}:{nmp[1]} fixes the sparsity; got also "
                          f"sparsity={sparsity!r} / owl_lambda={owl_lambda!r} (OWL is for "
                          "unstructured sparsity); give one")
    if nmp is None and sparsity is None:
        raise ConfigError("prune_blocks: give sparsity (in [0, 1)) or nm ('2:4', '4:8')")
    if isinstance(sparsity, Sequence) and not isinstance(sparsity, str):
        if len(sparsity) != len(blocks) or owl_lambda is not None:
            raise ConfigError(f"prune_blocks.sparsity: got {len(sparsity)} values for "
                              f"{len(blocks)} blocks (and owl_lambda={owl_lambda!r}); give one "
                              "per block, or one number")
        sps: list[Any] = [float(s) for s in sparsity]
    else:
        sps = [sparsity] * len(blocks)
    if nmp is None:
        for i, s in enumerate(sps):
            check_number(f"prune_blocks.sparsity[{i}]", s, 0.0, 1.0, hi_open=True)
    check_number("prune_blocks.damp", damp, 0.0, None)
    _check_blocks(blocks, nmp, sps)
    check_calib(blocks, xs)
    t0 = time.perf_counter()
    if owl_lambda is not None:
        sps = [float(s) for s in owl_sparsities(blocks, xs, float(sparsity), lam=owl_lambda,
                                                m=owl_m)]
    spent = [0.0]

    def one(w: jax.Array, st: LayerStats, path: str) -> tuple[jax.Array, dict]:
        i = int(re.match(r"blocks\[(\d+)\]", path).group(1))
        # the statistics are dispatched asynchronously: wait for them before the clock
        # starts, or the pruning time would include the statistics pass
        jax.block_until_ready((w, st))
        t = time.perf_counter()
        kw = dict(sparsity=None if nmp else sps[i], nm=nmp, path=path)
        if method == "magnitude":
            ws, keep = L.magnitude(w, **kw)
        elif method == "wanda":
            ws, keep = L.wanda(w, jnp.sqrt(jnp.diagonal(st.xtx)), **kw)
        else:
            ws, keep = L.sparsegpt(w, hessian(st), damp=damp, block_size=block_size, **kw)
        jax.block_until_ready(ws)
        spent[0] += time.perf_counter() - t
        return ws, {"mask": keep}

    res = quantize_blocks(blocks, xs, one)
    masks = [{p: d["mask"] for p, d in info.items()} for info in res.info]
    total = sum(int(m.size) for d in masks for m in d.values())
    kept = sum(int(jnp.sum(m)) for d in masks for m in d.values())
    bsp = [1 - nmp[0] / nmp[1]] * len(blocks) if nmp else [float(s) for s in sps]
    return PruneResult(list(res.blocks), masks, bsp, 1 - kept / max(total, 1), spent[0],
                       time.perf_counter() - t0)
