"""A small decoder-only GPT in Flax NNX, with a KV-cache decode path.

Byte vocabulary (256), pre-LayerNorm blocks, causal multi-head attention with
grouped-query heads (``num_kv_heads``), a GELU or SwiGLU MLP, learned or rotary
positions, and a tied or separate output head. Every linear layer is an
``nnx.Linear`` at a stable path, so compression rules can address them by regex:
``blocks/{i}/attn/{q,k,v,o}`` and ``blocks/{i}/mlp/{up,gate,down}`` (``gate``
only with SwiGLU); the embeddings are ``embed`` (and ``pos``), the untied head
``head``.

The cache is a plain pytree (one ``{"k", "v"}`` dict of ``(B, max_len, kv_heads,
head_dim)`` arrays per block, plus ``k_scale``/``v_scale`` when quantized to int8,
int4 or fp8: :mod:`jaxcomp.models.kv_cache`) passed in and returned by
:meth:`GPT.forward`, so a decode step is a pure function of (params, cache, tokens,
position).

Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from jaxcomp.models.gpt import GPT, generate
    >>> gpt = GPT(num_layers=1, width=32, num_heads=4, context=16, rngs=nnx.Rngs(0))
    >>> gpt(jnp.zeros((2, 8), jnp.int32)).shape
    (2, 8, 256)
    >>> generate(gpt, jnp.array([[72, 105]]), 3).shape
    (1, 5)
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxcomp.core.errors import ConfigError, check_choice
from jaxcomp.models.kv_cache import Cache, check_kv, init_kv_cache, kv_write

_NEG = -1e30  # added to masked attention scores (exp underflows to exactly 0)


def rope(x: jax.Array, positions: jax.Array, base: float = 10000.0) -> jax.Array:
    """Rotary position embedding of ``x`` (``..., T, heads, head_dim``) at ``positions`` (T,).

    Dimension pairs ``(i, i + d/2)`` are rotated by ``position * base**(-2i/d)``, so
    ``rope(q, m) · rope(k, n)`` depends on ``m - n`` only.

    Example:
        >>> import jax.numpy as jnp
        >>> x = jnp.ones((1, 1, 1, 2))
        >>> [round(float(v), 4) for v in rope(x, jnp.array([1]))[0, 0, 0]]
        [-0.3012, 1.3818]
    """
    half = x.shape[-1] // 2
    freq = base ** (-jnp.arange(half, dtype=jnp.float32) / half)
    ang = positions.astype(jnp.float32)[:, None] * freq[None, :]
    cos, sin = jnp.cos(ang)[:, None, :], jnp.sin(ang)[:, None, :]
    x1, x2 = x[..., :half], x[..., half:]
    return jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1).astype(x.dtype)


def attend(q: jax.Array, k: jax.Array, v: jax.Array, q_pos: jax.Array | None,
           k_pos: jax.Array | None) -> jax.Array:
    """Softmax attention with grouped KV heads: ``q`` (B, T, H, D), ``k``/``v`` (B, S, K, D)
    with ``H`` a multiple of ``K``; key ``s`` is visible to query ``t`` when
    ``k_pos[s] <= q_pos[t]`` (no mask when positions are ``None``). Returns (B, T, H, D)."""
    b, t, h, d = q.shape
    kv = k.shape[2]
    qg = q.reshape(b, t, kv, h // kv, d)
    scores = jnp.einsum("btkgd,bskd->bkgts", qg, k) / math.sqrt(d)
    if q_pos is not None:
        visible = k_pos[None, :] <= q_pos[:, None]  # (T, S)
        scores = jnp.where(visible, scores, _NEG)
    probs = jax.nn.softmax(scores.astype(jnp.float32), axis=-1).astype(v.dtype)
    return jnp.einsum("bkgts,bskd->btkgd", probs, v).reshape(b, t, h, d)


class Attention(nnx.Module):
    """Multi-head attention with ``num_kv_heads`` key/value heads (grouped-query when fewer
    than ``num_heads``); projections ``q``, ``k``, ``v``, ``o``."""

    def __init__(self, width: int, num_heads: int, num_kv_heads: int, *, causal: bool = True,
                 rope_base: float | None = None, bias: bool = False, out_std: float = 0.02,
                 head_dim: int | None = None, rngs: nnx.Rngs):
        self.num_heads, self.num_kv_heads = num_heads, num_kv_heads
        self.head_dim = head_dim or width // num_heads
        self.causal, self.rope_base = causal, rope_base
        init = nnx.initializers.normal(0.02)
        lin = lambda a, b, i=init: nnx.Linear(a, b, use_bias=bias, kernel_init=i, rngs=rngs)
        self.q = lin(width, num_heads * self.head_dim)
        self.k = lin(width, num_kv_heads * self.head_dim)
        self.v = lin(width, num_kv_heads * self.head_dim)
        self.o = lin(num_heads * self.head_dim, width, nnx.initializers.normal(out_std))

    def __call__(self, x: jax.Array, positions: jax.Array, cache: dict | None = None,
                 start: Any = 0) -> tuple[jax.Array, dict | None]:
        b, t, _ = x.shape
        q = self.q(x).reshape(b, t, self.num_heads, self.head_dim)
        k = self.k(x).reshape(b, t, self.num_kv_heads, self.head_dim)
        v = self.v(x).reshape(b, t, self.num_kv_heads, self.head_dim)
        if self.rope_base is not None:
            q, k = rope(q, positions, self.rope_base), rope(k, positions, self.rope_base)
        k_pos = positions
        if cache is not None:
            cache, k, v = kv_write(cache, k, v, start)
            k_pos = jnp.arange(k.shape[1])
        out = attend(q, k.astype(q.dtype), v.astype(q.dtype),
                     positions if self.causal else None, k_pos if self.causal else None)
        return self.o(out.reshape(b, t, -1)), cache


class MLP(nnx.Module):
    """``down(gelu(up(x)))``, or SwiGLU ``down(silu(gate(x)) * up(x))``."""

    def __init__(self, width: int, hidden: int, kind: str = "gelu", *, bias: bool = False,
                 out_std: float = 0.02, rngs: nnx.Rngs):
        init = nnx.initializers.normal(0.02)
        self.kind = kind
        self.up = nnx.Linear(width, hidden, use_bias=bias, kernel_init=init, rngs=rngs)
        self.gate = (nnx.Linear(width, hidden, use_bias=bias, kernel_init=init, rngs=rngs)
                     if kind == "swiglu" else None)
        self.down = nnx.Linear(hidden, width, use_bias=bias,
                               kernel_init=nnx.initializers.normal(out_std), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.gate is not None:
            return self.down(nnx.silu(self.gate(x)) * self.up(x))
        return self.down(nnx.gelu(self.up(x), approximate=True))


class Block(nnx.Module):
    """Pre-LayerNorm transformer block: ``x + attn(ln1(x))``, then ``x + mlp(ln2(x))``."""

    def __init__(self, width: int, num_heads: int, num_kv_heads: int, mlp: str, hidden: int, *,
                 causal: bool = True, rope_base: float | None = None, bias: bool = False,
                 out_std: float = 0.02, head_dim: int | None = None, rngs: nnx.Rngs):
        self.ln1 = nnx.LayerNorm(width, rngs=rngs)
        self.attn = Attention(width, num_heads, num_kv_heads, causal=causal, rope_base=rope_base,
                              bias=bias, out_std=out_std, head_dim=head_dim, rngs=rngs)
        self.ln2 = nnx.LayerNorm(width, rngs=rngs)
        self.mlp = MLP(width, hidden, mlp, bias=bias, out_std=out_std, rngs=rngs)

    def __call__(self, x, positions, cache=None, start=0):
        a, cache = self.attn(self.ln1(x), positions, cache, start)
        x = x + a
        return x + self.mlp(self.ln2(x)), cache


def check_heads(width: int, num_heads: int, num_kv_heads: int | None, mlp: str,
                head_dim: int | None = None) -> int:
    """Validate the attention shape; returns ``num_kv_heads`` (default ``num_heads``).
    Without ``head_dim``, ``num_heads`` must divide ``width``."""
    check_choice("model.mlp", mlp, ("gelu", "swiglu"))
    for name, val in (("model.width", width), ("model.num_heads", num_heads)):
        if not isinstance(val, int) or val < 1:
            raise ConfigError(f"{name}: got {val!r}; must be an integer >= 1")
    if head_dim is not None and (not isinstance(head_dim, int) or head_dim < 1):
        raise ConfigError(f"model.head_dim: got {head_dim!r}; must be None or an integer >= 1")
    if head_dim is None and width % num_heads:
        raise ConfigError(f"model.num_heads: got {num_heads}; must divide model.width={width}")
    kv = num_heads if num_kv_heads is None else num_kv_heads
    if not isinstance(kv, int) or kv < 1 or num_heads % kv:
        raise ConfigError(f"model.num_kv_heads: got {num_kv_heads!r}; must be an integer >= 1 "
                          f"dividing model.num_heads={num_heads}")
    return kv


def default_hidden(width: int, mlp: str) -> int:
    """4·width for GELU; for SwiGLU 8/3·width rounded up to a multiple of 8 (equal params)."""
    return 4 * width if mlp == "gelu" else -(-(8 * width // 3) // 8) * 8


class GPT(nnx.Module):
    """Decoder-only byte-level transformer; ``gpt(tokens)`` gives ``(B, T, vocab)`` logits.

    Args:
      vocab_size: 256 for bytes. num_layers, width, num_heads: the usual shape.
      num_kv_heads: key/value heads (``None``: ``num_heads``; fewer: grouped-query).
      context: the longest sequence (the learned position table's size).
      mlp: ``"gelu"`` or ``"swiglu"``; mlp_hidden: its hidden width (default
        :func:`default_hidden`).
      positions: ``"learned"`` (table ``pos``) or ``"rope"`` (rotary, no table).
      tie_embeddings: the head is ``embed``'s transpose; else a separate ``head``.
      bias: biases in the attention and MLP linear layers.
      head_dim: the attention head size (``None``: ``width // num_heads``); set it when
        ``num_heads * head_dim != width`` (e.g. a width-pruned model,
        :mod:`jaxcomp.prune.transformer`).
    """

    def __init__(self, *, vocab_size: int = 256, num_layers: int = 4, width: int = 256,
                 num_heads: int = 4, num_kv_heads: int | None = None, context: int = 256,
                 mlp: str = "gelu", mlp_hidden: int | None = None, positions: str = "learned",
                 tie_embeddings: bool = True, bias: bool = False, rope_base: float = 10000.0,
                 head_dim: int | None = None, rngs: nnx.Rngs):
        kv = check_heads(width, num_heads, num_kv_heads, mlp, head_dim)
        check_choice("model.positions", positions, ("learned", "rope"))
        hd = head_dim or width // num_heads
        if positions == "rope" and hd % 2:
            raise ConfigError(f"model.positions='rope' needs an even head dimension; got "
                              f"head_dim = {hd}" + ("" if head_dim else
                                                    f" (width/num_heads = {width}/{num_heads})"))
        for name, val in (("model.num_layers", num_layers), ("model.context", context),
                          ("model.vocab_size", vocab_size)):
            if not isinstance(val, int) or val < 1:
                raise ConfigError(f"{name}: got {val!r}; must be an integer >= 1")
        self.vocab_size, self.context, self.width = vocab_size, context, width
        self.num_kv_heads, self.head_dim = kv, hd
        emb = nnx.initializers.normal(0.02)
        self.embed = nnx.Embed(vocab_size, width, embedding_init=emb, rngs=rngs)
        self.pos = (nnx.Embed(context, width, embedding_init=emb, rngs=rngs)
                    if positions == "learned" else None)
        hidden = mlp_hidden or default_hidden(width, mlp)
        out_std = 0.02 / math.sqrt(2 * num_layers)
        self.blocks = nnx.List([
            Block(width, num_heads, kv, mlp, hidden, causal=True, bias=bias, out_std=out_std,
                  rope_base=rope_base if positions == "rope" else None, head_dim=hd, rngs=rngs)
            for _ in range(num_layers)])
        self.ln_f = nnx.LayerNorm(width, rngs=rngs)
        self.head = (None if tie_embeddings else
                     nnx.Linear(width, vocab_size, use_bias=False, kernel_init=emb, rngs=rngs))

    def __call__(self, tokens: jax.Array) -> jax.Array:
        return self.forward(tokens)[0]

    def init_cache(self, batch_size: int, max_len: int | None = None,
                   dtype: Any = jnp.float32, *, kv_quant: str | None = None,
                   kv_scale: str = "token") -> Cache:
        """An empty KV cache for ``max_len`` positions (default: ``context``), float or
        quantized (``kv_quant`` ``"int8"``/``"int4"``/``"fp8"``, scales per ``kv_scale``
        ``"token"`` or ``"head"``; layouts in :mod:`jaxcomp.models.kv_cache`)."""
        return init_kv_cache(len(self.blocks), batch_size, max_len or self.context,
                             self.num_kv_heads, self.head_dim, kv_quant=kv_quant,
                             kv_scale=kv_scale, dtype=dtype)

    def forward(self, tokens: jax.Array, cache: Cache | None = None, start: Any = 0
                ) -> tuple[jax.Array, Cache | None]:
        """Logits of ``tokens`` (B, T) placed at positions ``start … start+T-1``.

        With a ``cache`` the new keys/values are written at those positions and the
        queries see every earlier cached position: prefill is ``forward(prompt,
        cache, 0)``, a decode step ``forward(next_token[:, None], cache, pos)``.
        """
        t = tokens.shape[1]
        if isinstance(start, int):
            limit = cache[0]["k"].shape[1] if cache else self.context
            if self.pos is not None:
                limit = min(limit, self.context)
            if start < 0 or start + t > limit:
                raise ConfigError(f"GPT.forward: positions {start}..{start + t - 1} exceed the "
                                  f"allowed 0..{limit - 1} (context / cache length)")
        positions = start + jnp.arange(t)
        x = self.embed(tokens)
        if self.pos is not None:
            x = x + self.pos(positions)[None]
        new_cache = [] if cache is not None else None
        for i, block in enumerate(self.blocks):
            x, c = block(x, positions, None if cache is None else cache[i], start)
            if new_cache is not None:
                new_cache.append(c)
        x = self.ln_f(x)
        logits = self.embed.attend(x) if self.head is None else self.head(x)
        return logits, new_cache


def sample_next(logits: jax.Array, key: jax.Array | None, temperature: float = 0.0
                ) -> jax.Array:
    """Greedy (``temperature == 0``) or softmax-temperature sampling of (B, V) logits."""
    if temperature == 0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    if key is None:
        raise ConfigError(f"sample: temperature={temperature} needs a key (jax.random.key)")
    return jax.random.categorical(key, logits / temperature, axis=-1).astype(jnp.int32)


def generate(gpt: GPT, prompt: jax.Array, max_new_tokens: int, *, key: jax.Array | None = None,
             temperature: float = 0.0, kv_quant: str | None = None,
             kv_scale: str = "token") -> jax.Array:
    """Prompt (B, P) followed by ``max_new_tokens`` decoded bytes, through the KV cache.

    One jitted program: prefill the prompt, then a ``lax.scan`` of one-token decode
    steps. ``temperature=0`` is greedy; otherwise ``key`` is required. ``kv_quant``
    (``None``, ``"int8"``, ``"int4"``, ``"fp8"``) and ``kv_scale`` (``"token"``,
    ``"head"``) store the cache quantized (:mod:`jaxcomp.models.kv_cache`).
    """
    check_kv(kv_quant, kv_scale, gpt.head_dim)
    if temperature < 0:
        raise ConfigError(f"generate: temperature={temperature}; must be >= 0")
    if temperature > 0 and key is None:
        raise ConfigError(f"generate: temperature={temperature} needs a key (jax.random.key)")
    prompt = jnp.asarray(prompt, jnp.int32)
    if max_new_tokens < 1:
        return prompt
    total = prompt.shape[1] + max_new_tokens
    if gpt.pos is not None and total > gpt.context:
        raise ConfigError(f"generate: prompt {prompt.shape[1]} + max_new_tokens "
                          f"{max_new_tokens} = {total} exceeds context={gpt.context}")
    graphdef, state = nnx.split(gpt)
    key = jax.random.key(0) if key is None else key
    return _generate(graphdef, state, prompt, key, max_new_tokens, float(temperature),
                     kv_quant, kv_scale)


@jax.jit(static_argnums=(0, 4, 5, 6, 7))
def _generate(graphdef, state, prompt, key, n, temperature, kv_quant, kv_scale):
    gpt = nnx.merge(graphdef, state)
    b, p = prompt.shape
    cache = gpt.init_cache(b, p + n, kv_quant=kv_quant, kv_scale=kv_scale)
    logits, cache = gpt.forward(prompt, cache, 0)
    first = sample_next(logits[:, -1], jax.random.fold_in(key, 0), temperature)

    def step(carry, i):
        tok, cache = carry
        logits, cache = gpt.forward(tok[:, None], cache, p + i)
        nxt = sample_next(logits[:, -1], jax.random.fold_in(key, i + 1), temperature)
        return (nxt, cache), tok

    (last, _), toks = jax.lax.scan(step, (first, cache), jnp.arange(n - 1))
    new = jnp.concatenate([toks.T, last[:, None]], axis=1)
    return jnp.concatenate([prompt, new], axis=1)


def as_module(model: Any, params: Any, model_state: Any = None) -> nnx.Module:
    """The NNX module of a :class:`jaxcomp.flax.Model` built by ``from_nnx`` (e.g.
    ``get_model("gpt", ...)``) carrying ``params`` — compressed ones included — for
    :func:`generate` or direct calls. No parameters are initialized to build it."""
    from jaxcomp.flax.nnx import split_params

    abstract = nnx.eval_shape(lambda: model.module(nnx.Rngs(0)))
    graphdef, _, rest = split_params(abstract)
    return nnx.merge(graphdef, params, rest if model_state is None else model_state)


__all__ = ["GPT", "MLP", "Attention", "Block", "Cache", "as_module", "attend", "check_heads",
           "default_hidden", "generate", "rope", "sample_next"]
