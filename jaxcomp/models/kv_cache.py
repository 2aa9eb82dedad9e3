"""The GPT's KV cache, plain or quantized (int8, int4, fp8 e4m3), and teacher-forced decoding.

A cache is a list (one entry per block) of dicts. A plain entry is ``{"k", "v"}``
of ``(B, S, kv_heads, head_dim)`` float arrays. A quantized entry also holds
``k_scale``/``v_scale`` (float32) and stores codes:

| ``kv_quant`` | codes ``k``/``v`` | bytes per cached value |
|---|---|---|
| ``"int8"`` | int8 in ``[-127, 127]``, shape ``(B, S, K, D)`` | 1 |
| ``"int4"`` | uint8, two codes per byte, shape ``(B, S, K, D/2)`` (below) | 1/2 |
| ``"fp8"`` | ``float8_e4m3fn``, shape ``(B, S, K, D)`` | 1 |

int4 packing: ``q[..., j] + 8`` in the low nibble, ``q[..., j + D/2] + 8`` in the high
one (codes in ``[-7, 7]``; an empty cache byte is ``0x88``, i.e. two zeros).

Scales are symmetric absmax (``max|x| / qmax``, ``qmax`` = 127, 7 or 448), with
``kv_scale``:

* ``"token"``: one scale per (batch, position, kv-head), shape ``(B, S, K)``: each
  written token is quantized on its own, so prefill and step-by-step decoding store
  the same codes.
* ``"head"``: one scale per (batch, kv-head), shape ``(B, K)``, fixed by the first
  write into the cache (the prefill's ``max|x|`` over its tokens and head dims);
  later tokens reuse it and saturate at ``±qmax·scale``.

The mode is read back from the entry (codes dtype, scale rank), so a cache is a
plain pytree and :meth:`jaxcomp.models.gpt.GPT.forward` needs no extra argument.
Attention sees the dequantized float32 keys and values of every cached position,
the newly written ones included.

Example:
    >>> import jax.numpy as jnp
    >>> c = init_kv_cache(2, 1, 16, 2, 8, kv_quant="int4")
    >>> c[0]["k"].dtype, c[0]["k"].shape, c[0]["k_scale"].shape
    (dtype('uint8'), (1, 16, 2, 4), (1, 16, 2))
    >>> cache_bytes(c) == kv_cache_bytes(2, 1, 16, 2, 8, kv_quant="int4")
    True
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxcomp.core.errors import ConfigError, check_choice
from jaxcomp.quant.formats.floats import ELEMS, round_to_elem
from jaxcomp.quant.uniform import quantize_with

Cache = list[dict[str, jax.Array]]
KV_QUANTS = (None, "int8", "int4", "fp8")
KV_SCALES = ("token", "head")
QMAX = {"int8": 127.0, "int4": 7.0, "fp8": ELEMS["e4m3"].max}
_CODE_DTYPE = {"int8": jnp.int8, "int4": jnp.uint8, "fp8": jnp.float8_e4m3fn}


def check_kv(kv_quant: str | None, kv_scale: str, head_dim: int | None = None) -> None:
    """ConfigError for an unknown ``kv_quant`` / ``kv_scale`` (or int4 with odd head_dim)."""
    check_choice("kv_quant", kv_quant, KV_QUANTS)
    check_choice("kv_scale", kv_scale, KV_SCALES)
    if kv_quant == "int4" and head_dim is not None and head_dim % 2:
        raise ConfigError(f"kv_quant='int4' packs two codes per byte and needs an even "
                          f"head_dim; got head_dim={head_dim}")


def init_kv_cache(num_layers: int, batch: int, max_len: int, kv_heads: int, head_dim: int, *,
                  kv_quant: str | None = None, kv_scale: str = "token",
                  dtype: Any = jnp.float32) -> Cache:
    """An empty cache (see the module docstring for the layout of each ``kv_quant``)."""
    check_kv(kv_quant, kv_scale, head_dim)
    shape = (batch, max_len, kv_heads, head_dim)
    if kv_quant is None:
        return [{"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)}
                for _ in range(num_layers)]
    cshape = shape[:-1] + (head_dim // 2 if kv_quant == "int4" else head_dim,)
    sshape = shape[:-1] if kv_scale == "token" else (batch, kv_heads)
    zero = jnp.full(cshape, 0x88 if kv_quant == "int4" else 0, _CODE_DTYPE[kv_quant])
    return [{"k": zero, "v": zero,
             "k_scale": jnp.zeros(sshape, jnp.float32), "v_scale": jnp.zeros(sshape, jnp.float32)}
            for _ in range(num_layers)]


def kv_mode(entry: dict[str, jax.Array]) -> tuple[str | None, str]:
    """``(kv_quant, kv_scale)`` of one cache entry, read from its dtypes and shapes."""
    if "k_scale" not in entry:
        return None, "token"
    dt = entry["k"].dtype
    quant = next((q for q, d in _CODE_DTYPE.items() if jnp.dtype(d) == dt), None)
    if quant is None:
        raise ConfigError(f"KV cache: code dtype {dt} is none of {list(_CODE_DTYPE)}'s "
                          f"({[str(jnp.dtype(d)) for d in _CODE_DTYPE.values()]})")
    return quant, "token" if entry["k_scale"].ndim == 3 else "head"


def quantize_kv(x: jax.Array, kv_quant: str, scale: jax.Array | None = None
                ) -> tuple[jax.Array, jax.Array]:
    """Codes and per-token scales ``(B, T, K)`` of ``x`` (B, T, K, D); with ``scale``
    given (broadcastable to ``(B, T, K)``) that scale is used instead.

    Example:
        >>> import jax.numpy as jnp
        >>> q, s = quantize_kv(jnp.array([[[[1.0, -0.5, 0.25, 0.0]]]]), "int8")
        >>> q.tolist(), s.tolist()
        ([[[[127, -64, 32, 0]]]], [[[0.007874015718698502]]])
    """
    x = x.astype(jnp.float32)
    qmax = QMAX[kv_quant]
    if scale is None:
        amax = jnp.max(jnp.abs(x), axis=-1)
        scale = jnp.where(amax > 0, amax / qmax, 1.0)
    s = jnp.broadcast_to(scale, x.shape[:-1])[..., None]
    if kv_quant == "fp8":
        return round_to_elem(x / s, ELEMS["e4m3"]).astype(jnp.float8_e4m3fn), s[..., 0]
    bits = 8 if kv_quant == "int8" else 4
    q = quantize_with(x, s, jnp.zeros_like(s), bits).astype(jnp.int32)
    if kv_quant == "int8":
        return q.astype(jnp.int8), s[..., 0]
    half = x.shape[-1] // 2
    u = q + 8
    return (u[..., :half] | (u[..., half:] << 4)).astype(jnp.uint8), s[..., 0]


def dequantize_kv(codes: jax.Array, scale: jax.Array, kv_quant: str) -> jax.Array:
    """Float32 values of codes (``(B, S, K, ·)``) with scales ``(B, S, K)`` or ``(B, K)``."""
    if scale.ndim == 2:
        scale = scale[:, None, :]
    if kv_quant == "int4":
        c = codes.astype(jnp.int32)
        q = jnp.concatenate([(c & 15) - 8, (c >> 4) - 8], axis=-1)
    else:
        q = codes
    return q.astype(jnp.float32) * scale[..., None]


def kv_write(entry: dict[str, jax.Array], k: jax.Array, v: jax.Array, start: Any
             ) -> tuple[dict[str, jax.Array], jax.Array, jax.Array]:
    """Write new ``k``/``v`` (B, T, K, D) at ``start``; returns the new entry and the whole
    cache's keys and values as attention should see them (dequantized if quantized)."""
    at = (0, start, 0, 0)
    quant, mode = kv_mode(entry)
    if quant is None:
        k = jax.lax.dynamic_update_slice(entry["k"], k.astype(entry["k"].dtype), at)
        v = jax.lax.dynamic_update_slice(entry["v"], v.astype(entry["v"].dtype), at)
        return {"k": k, "v": v}, k, v
    new = {}
    for name, x in (("k", k), ("v", v)):
        old_s = entry[f"{name}_scale"]
        if mode == "head":
            amax = jnp.max(jnp.abs(x.astype(jnp.float32)), axis=(1, 3))       # (B, K)
            first = jnp.where(amax > 0, amax / QMAX[quant], 1.0)
            s = jnp.where(old_s > 0, old_s, first)
            q, _ = quantize_kv(x, quant, s[:, None, :])
            new[f"{name}_scale"] = s
        else:
            q, s = quantize_kv(x, quant)
            new[f"{name}_scale"] = jax.lax.dynamic_update_slice(old_s, s, at[:3])
        new[name] = jax.lax.dynamic_update_slice(entry[name], q, at)
    deq = [dequantize_kv(new[n], new[f"{n}_scale"], quant) for n in ("k", "v")]
    return new, deq[0], deq[1]


def cache_bytes(cache: Cache) -> int:
    """Bytes held by a cache's arrays (codes and scales)."""
    return int(sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(cache)))


def kv_cache_bytes(num_layers: int, batch: int, max_len: int, kv_heads: int, head_dim: int, *,
                   kv_quant: str | None = None, kv_scale: str = "token",
                   dtype: Any = jnp.float32) -> int:
    """The formula for :func:`cache_bytes`: ``2·L·B·K·(S·D·bytes_per_value + scales·4)``
    with ``scales`` = S (per token) or 1 (per head).

    Example:
        >>> kv_cache_bytes(4, 1, 256, 4, 64), kv_cache_bytes(4, 1, 256, 4, 64, kv_quant="int8")
        (2097152, 557056)
    """
    check_kv(kv_quant, kv_scale, head_dim)
    per = 2 * num_layers * batch * kv_heads
    if kv_quant is None:
        return per * max_len * head_dim * jnp.dtype(dtype).itemsize
    values = max_len * (head_dim // 2 if kv_quant == "int4" else head_dim)
    return per * (values + 4 * (max_len if kv_scale == "token" else 1))


# ------------------------------------------------------------------ teacher-forced decoding
def decode_logits(gpt: nnx.Module, tokens: jax.Array, *, kv_quant: str | None = None,
                  kv_scale: str = "token", prefill: int = 1) -> jax.Array:
    """Logits (B, T, V) of ``tokens`` (B, T) computed through the KV cache: the first
    ``prefill`` tokens in one forward pass, then one token per step (``lax.scan``).

    With ``kv_quant=None`` this equals ``gpt(tokens)`` up to float rounding.

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from jaxcomp.models.gpt import GPT
        >>> gpt = GPT(num_layers=1, width=32, num_heads=4, context=16, rngs=nnx.Rngs(0))
        >>> x = jnp.arange(12).reshape(1, 12)
        >>> bool(jnp.allclose(decode_logits(gpt, x), gpt(x), atol=1e-5))
        True
    """
    tokens = jnp.asarray(tokens, jnp.int32)
    t = tokens.shape[1]
    check_kv(kv_quant, kv_scale, gpt.head_dim)
    if not isinstance(prefill, int) or not 1 <= prefill <= t:
        raise ConfigError(f"decode_logits: prefill={prefill!r}; must be an int in 1..{t}")
    graphdef, state = nnx.split(gpt)
    return _decode(graphdef, state, tokens, kv_quant, kv_scale, prefill)


@functools.partial(jax.jit, static_argnums=(0, 3, 4, 5))
def _decode(graphdef, state, tokens, kv_quant, kv_scale, prefill):
    gpt = nnx.merge(graphdef, state)
    b, t = tokens.shape
    cache = gpt.init_cache(b, t, kv_quant=kv_quant, kv_scale=kv_scale)
    first, cache = gpt.forward(tokens[:, :prefill], cache, 0)

    def step(cache, i):
        logits, cache = gpt.forward(jax.lax.dynamic_slice_in_dim(tokens, i, 1, 1), cache, i)
        return cache, logits[:, 0]

    _, rest = jax.lax.scan(step, cache, jnp.arange(prefill, t))
    return jnp.concatenate([first, jnp.moveaxis(rest, 0, 1)], axis=1)


def decode_bpb(gpt: nnx.Module, x: Any, y: Any, *, kv_quant: str | None = None,
               kv_scale: str = "token", prefill: int = 1, batch_size: int = 16) -> float:
    """Bits per byte of targets ``y`` given inputs ``x`` (windows, (N, T)) with logits from
    :func:`decode_logits` (every position scored)."""
    total, count = 0.0, 0
    for i in range(0, len(x), batch_size):
        xb, yb = jnp.asarray(x[i:i + batch_size]), jnp.asarray(y[i:i + batch_size])
        logits = decode_logits(gpt, xb, kv_quant=kv_quant, kv_scale=kv_scale, prefill=prefill)
        logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
        total += -float(jnp.take_along_axis(logp, yb[..., None].astype(jnp.int32), -1).sum())
        count += yb.size
    return total / count / math.log(2)


__all__ = ["KV_QUANTS", "KV_SCALES", "Cache", "cache_bytes", "check_kv", "decode_bpb",
           "decode_logits", "dequantize_kv", "init_kv_cache", "kv_cache_bytes", "kv_mode",
           "kv_write", "quantize_kv"]
