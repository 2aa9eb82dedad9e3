"""The library GPT as a sequence of calibration blocks, and back.

:func:`gpt_blocks` turns a GPT (the :class:`jaxcomp.flax.Model` of
``get_model("gpt", ...)``) and its params into one
:class:`jaxcomp.quant.calib.Block` per transformer block for the block-by-block
calibration pass (:func:`jaxcomp.quant.calib.quantize_blocks`). Each block's
params are ``{"blocks": {i: ...}}``, so the tapped names are the kernels' full
paths in the GPT's params — ``blocks/{i}/attn/{q,k,v,o}/kernel`` and
``blocks/{i}/mlp/{up,gate,down}/kernel`` — and :func:`write_back` puts quantized
kernels back into the GPT's params by those paths (an ``nnx.State`` or a pure
dict, as given). :func:`embed` is the prefix (tokens to the residual stream,
block 0's input) and :func:`logits` the suffix (final norm and head).

The blocks are a pure-function re-statement of :mod:`jaxcomp.models.gpt`'s forward
(checked against it in the tests) with two extras that the NNX module does not
have: the ``tap`` on every linear input, and options in :class:`GPTSpec` used
by the transformer tables — fake-quantized keys/values (``kv_bits``, the KV
cache's values as the decode path would store them), RMSNorm instead of
LayerNorm and online Hadamard rotations of the ``o`` / ``down`` inputs (a
rotated model, :mod:`jaxcomp.models.gpt_rotate`). :func:`tapped_model` wraps
all this as a :class:`~jaxcomp.flax.Model`, so
:func:`jaxcomp.models.lm.bits_per_byte` evaluates quantized params with an
activation tap.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp.models import get_model
    >>> from jaxcomp.quant import calib
    >>> model = get_model("gpt", input_shape=(16,), num_layers=2, width=32, num_heads=4)
    >>> params, ms = model.init(jax.random.key(0), None)
    >>> blocks = gpt_blocks(model, params)
    >>> len(blocks), blocks[1].linears[0]
    (2, 'blocks/1/attn/q/kernel')
    >>> tokens = jnp.arange(32).reshape(2, 16)
    >>> x = calib.run_blocks(blocks, embed(model, params, tokens))
    >>> ref, _ = model.apply(params, ms, tokens)
    >>> bool(jnp.allclose(logits(model, params, x), ref, atol=1e-5))
    True
    >>> res = calib.quantize_blocks(blocks, [embed(model, params, tokens)], "rtn", bits=4,
    ...                             group_size=32)
    >>> qparams = write_back(params, res.blocks)
    >>> new, old = kernels(res.blocks), kernels(blocks)
    >>> bool(jnp.any(new["blocks/0/attn/q/kernel"] != old["blocks/0/attn/q/kernel"]))
    True
    >>> out, _ = model.apply(qparams, ms, tokens)   # the quantized GPT, as an NNX model
    >>> out.shape
    (2, 16, 256)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxcomp.core import paths as _paths
from jaxcomp.core.errors import ConfigError
from jaxcomp.flax.model import Model
from jaxcomp.models.gpt import attend, rope
from jaxcomp.quant.calib.actquant import per_token
from jaxcomp.quant.calib.driver import Block, Tap, no_tap

ATTN = ("q", "k", "v", "o")


class GPTSpec(NamedTuple):
    """The static shape of a GPT forward (hashable: one compiled program per spec).

    ``kv_bits``: fake-quantize keys (after RoPE) and values per token and head to this
    many bits (``None``: off). ``norm``: ``"layer"`` (the GPT's LayerNorm) or ``"rms"``
    (a rotated model). ``online_hadamard``: multiply the ``o`` and ``down`` inputs by a
    normalized Hadamard matrix before the tap (their kernels must be rotated to match).
    """

    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    mlp: str
    rope_base: float | None
    learned_pos: bool
    tied: bool
    eps: float
    kv_bits: int | None = None
    norm: str = "layer"
    online_hadamard: bool = False


def gpt_spec(model: Model, **options: Any) -> GPTSpec:
    """The :class:`GPTSpec` of a GPT built by ``get_model("gpt", ...)`` (no params
    are initialized); ``options`` set ``kv_bits``, ``norm``, ``online_hadamard``."""
    from jaxcomp.models.gpt import GPT

    if model.module is None:
        raise ConfigError(f"gpt_spec: model {model.name!r} has no NNX constructor; build it "
                          "with get_model('gpt', ...)")
    gpt = nnx.eval_shape(lambda: model.module(nnx.Rngs(0)))
    if not isinstance(gpt, GPT):
        raise ConfigError(f"gpt_spec: model {model.name!r} builds a {type(gpt).__name__}, "
                          "not a jaxcomp.models.gpt.GPT")
    return module_spec(gpt, **options)


def module_spec(gpt: Any, **options: Any) -> GPTSpec:
    """The :class:`GPTSpec` of a GPT module (concrete or abstract); ``options`` as for
    :func:`gpt_spec`."""
    attn = gpt.blocks[0].attn
    spec = GPTSpec(len(gpt.blocks), attn.num_heads, attn.num_kv_heads, attn.head_dim,
                   gpt.blocks[0].mlp.kind, attn.rope_base, gpt.pos is not None,
                   gpt.head is None, float(gpt.ln_f.epsilon))
    spec = spec._replace(**options)
    if spec.kv_bits is not None and not (isinstance(spec.kv_bits, int) and
                                         2 <= spec.kv_bits <= 8):
        raise ConfigError(f"gpt_spec.kv_bits: got {spec.kv_bits!r}; allowed None or 2..8")
    if spec.norm not in ("layer", "rms"):
        raise ConfigError(f"gpt_spec.norm: got {spec.norm!r}; allowed 'layer' or 'rms'")
    return spec


def pure(params: Any) -> dict:
    """Params as nested dicts of arrays (an ``nnx.State`` through ``nnx.to_pure_dict``)."""
    return nnx.to_pure_dict(params) if isinstance(params, nnx.State) else params


def norm_forward(p: Mapping, x: jax.Array, spec: GPTSpec) -> jax.Array:
    """The block's LayerNorm (or RMSNorm) with params ``p`` (``scale``, ``bias``).

    A ``"mask"`` entry in ``p`` (a ``(D,)`` 0/1 vector) takes the statistics over the
    channels it keeps only (``x`` must be zero elsewhere): the masked model of a
    residual-stream-pruned GPT (:mod:`jaxcomp.prune.transformer`)."""
    x32 = x.astype(jnp.float32)
    m = p.get("mask")
    mean = (lambda v: jnp.mean(v, -1, keepdims=True)) if m is None else \
        (lambda v: jnp.sum(v * m, -1, keepdims=True) / jnp.sum(m))
    if spec.norm == "layer":
        x32 = x32 - mean(x32)
        x32 = x32 if m is None else x32 * m
    y = x32 * jax.lax.rsqrt(mean(x32 * x32) + spec.eps)
    if "scale" in p:
        y = y * p["scale"]
    if "bias" in p:
        y = y + p["bias"]
    return y.astype(x.dtype)


def _linear(p: Mapping, name: str, x: jax.Array, tap: Tap) -> jax.Array:
    y = tap(name + "/kernel", x) @ p["kernel"]
    return y + p["bias"] if "bias" in p else y


@functools.lru_cache(maxsize=32)
def _hadamard(n: int) -> np.ndarray:
    from jaxcomp.quant.calib.rotate import hadamard

    return hadamard(n) / np.sqrt(n)


def block_forward(spec: GPTSpec, i: int, p: Mapping, x: jax.Array, tap: Tap = no_tap
                  ) -> jax.Array:
    """Transformer block ``i`` (params ``p`` = the GPT's ``blocks/i`` subtree) on the
    residual stream ``x`` ``(B, T, D)``, calling ``tap`` on every linear input."""
    pre = f"blocks/{i}/"
    b, t, _ = x.shape
    positions = jnp.arange(t)
    a, at = norm_forward(p["ln1"], x, spec), p["attn"]
    q = _linear(at["q"], pre + "attn/q", a, tap).reshape(b, t, spec.num_heads, spec.head_dim)
    k = _linear(at["k"], pre + "attn/k", a, tap).reshape(b, t, spec.num_kv_heads, spec.head_dim)
    v = _linear(at["v"], pre + "attn/v", a, tap).reshape(b, t, spec.num_kv_heads, spec.head_dim)
    if spec.rope_base is not None:
        q, k = rope(q, positions, spec.rope_base), rope(k, positions, spec.rope_base)
    if spec.kv_bits is not None:
        k, v = per_token(k, spec.kv_bits), per_token(v, spec.kv_bits)
    u = attend(q, k, v, positions, positions).reshape(b, t, -1)
    if spec.online_hadamard:
        u = u @ _hadamard(u.shape[-1])
    x = x + _linear(at["o"], pre + "attn/o", u, tap)
    h, mp = norm_forward(p["ln2"], x, spec), p["mlp"]
    if spec.mlp == "swiglu":
        u = jax.nn.silu(_linear(mp["gate"], pre + "mlp/gate", h, tap)) * \
            _linear(mp["up"], pre + "mlp/up", h, tap)
    else:
        u = jax.nn.gelu(_linear(mp["up"], pre + "mlp/up", h, tap), approximate=True)
    if spec.online_hadamard:
        u = u @ _hadamard(u.shape[-1])
    return x + _linear(mp["down"], pre + "mlp/down", u, tap)


@functools.lru_cache(maxsize=32)
def block_fn(spec: GPTSpec) -> Callable[[Any, jax.Array, Tap], jax.Array]:
    """The calib ``Block.apply`` for params ``{"blocks": {i: ...}}`` (one function
    object per spec, so the driver's jitted passes are shared by every block)."""
    def apply(params, x, tap):
        (i, p), = pure(params)["blocks"].items()
        return block_forward(spec, int(i), p, x, tap)
    return apply


def linear_paths(spec: GPTSpec, i: int) -> tuple[str, ...]:
    """Block ``i``'s linear kernel paths (``gate`` only with SwiGLU)."""
    mlp = ("up", "gate", "down") if spec.mlp == "swiglu" else ("up", "down")
    return tuple(f"blocks/{i}/attn/{n}/kernel" for n in ATTN) + \
        tuple(f"blocks/{i}/mlp/{n}/kernel" for n in mlp)


def gpt_blocks(model: Model, params: Any, spec: GPTSpec | None = None, **options: Any
               ) -> list[Block]:
    """One calib :class:`~jaxcomp.quant.calib.Block` per transformer block of the GPT.

    ``params`` may be the GPT's ``nnx.State`` or its pure dict (or a rotated model's
    pure dict with ``spec`` given); ``options`` go to :func:`gpt_spec`.
    """
    spec = spec or gpt_spec(model, **options)
    p = pure(params)
    fn = block_fn(spec)
    return [Block(fn, {"blocks": {i: p["blocks"][i]}}, linear_paths(spec, i))
            for i in range(spec.num_layers)]


def embed_forward(spec: GPTSpec, p: Mapping, tokens: jax.Array) -> jax.Array:
    """Tokens ``(B, T)`` to the residual stream ``(B, T, D)`` (embedding + positions)."""
    x = jnp.take(p["embed"]["embedding"], tokens, axis=0)
    if spec.learned_pos:
        x = x + p["pos"]["embedding"][: tokens.shape[1]][None]
    return x


def head_forward(spec: GPTSpec, p: Mapping, x: jax.Array) -> jax.Array:
    """The final norm and the output head: residual stream to ``(B, T, vocab)`` logits."""
    x = norm_forward(p["ln_f"], x, spec)
    if "head" in p:
        h = p["head"]
        return x @ h["kernel"] + h["bias"] if "bias" in h else x @ h["kernel"]
    return x @ p["embed"]["embedding"].T


def embed(model: Model, params: Any, tokens: jax.Array, spec: GPTSpec | None = None
          ) -> jax.Array:
    """Block 0's input for ``tokens``: the embedding prefix of the GPT."""
    return embed_forward(spec or gpt_spec(model), pure(params), jnp.asarray(tokens, jnp.int32))


def logits(model: Model, params: Any, x: jax.Array, spec: GPTSpec | None = None) -> jax.Array:
    """Logits from the last block's output ``x`` (final norm, then head)."""
    return head_forward(spec or gpt_spec(model), pure(params), x)


def block_states(spec: GPTSpec, params: Any, tokens: jax.Array, tap: Tap = no_tap
                 ) -> list[jax.Array]:
    """The residual stream ``[embedding, after block 0, ..., after the last block]``
    (``num_layers + 1`` arrays ``(B, T, width)``) of the GPT with a ``tap``; the logits
    are ``head_forward(spec, pure(params), states[-1])``."""
    p = pure(params)
    states = [embed_forward(spec, p, tokens)]
    for i in range(spec.num_layers):
        states.append(block_forward(spec, i, p["blocks"][i], states[-1], tap))
    return states


def forward(spec: GPTSpec, params: Any, tokens: jax.Array, tap: Tap = no_tap) -> jax.Array:
    """The whole GPT as a pure function of ``(params, tokens)`` with a ``tap``."""
    return head_forward(spec, pure(params), block_states(spec, params, tokens, tap)[-1])


def tapped_model(model: Model, tap: Tap = no_tap, spec: GPTSpec | None = None,
                 **options: Any) -> Model:
    """A :class:`~jaxcomp.flax.Model` running the GPT with ``tap`` on every linear input
    (and the :class:`GPTSpec` options), for :func:`jaxcomp.models.lm.bits_per_byte`.

    Build it once per setting: it is a static argument of the jitted evaluation."""
    spec = spec or gpt_spec(model, **options)

    def apply(params, model_state, x, *, train: bool = False, rng=None):
        return forward(spec, params, jnp.asarray(x, jnp.int32), tap), model_state

    return Model(model.init, apply, f"{model.name}+tap", model.module)


def kernels(blocks: Sequence[Block]) -> dict[str, jax.Array]:
    """``{path: kernel}`` of every listed linear of the blocks."""
    out = {}
    for b in blocks:
        leaves = _paths.path_dict(b.params)
        out.update({p: leaves[p] for p in b.linears})
    return out


def write_back(params: Any, new: Sequence[Block] | Mapping[str, jax.Array]) -> Any:
    """``params`` (``nnx.State`` or dict) with the kernels of ``new`` — calib blocks, e.g.
    :attr:`CalibResult.blocks`, or ``{path: kernel}`` — written at their paths.

    Raises :class:`jaxcomp.core.errors.PathError` naming a path ``params`` lacks, and
    a ConfigError for a kernel whose shape differs."""
    new = dict(new) if isinstance(new, Mapping) else kernels(new)
    old = _paths.path_dict(params)
    for p, w in new.items():
        if p in old and tuple(old[p].shape) != tuple(w.shape):
            raise ConfigError(f"write_back: {p} has shape {tuple(old[p].shape)}; the new "
                              f"kernel has shape {tuple(w.shape)}")
    return _paths.replace(params, {p: jnp.asarray(w, old[p].dtype) if p in old else w
                                   for p, w in new.items()})


__all__ = ["GPTSpec", "block_fn", "block_forward", "embed", "embed_forward", "forward",
           "gpt_blocks", "gpt_spec", "head_forward", "kernels", "linear_paths", "logits",
           "module_spec", "norm_forward", "pure", "tapped_model", "write_back"]
