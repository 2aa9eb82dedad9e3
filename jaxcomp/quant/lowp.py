"""Low-precision inference for the GPT: linear kernels converted to int8 / fp8 / int4 / bf16.

:func:`convert_gpt` returns a copy of a :class:`jaxcomp.models.gpt.GPT` whose block
linear layers (``attn/{q,k,v,o}``, ``mlp/{up,gate,down}``; the untied ``head`` with
``head=True``) are :class:`QuantLinear` modules, so ``gpt(tokens)``, ``forward``,
:func:`~jaxcomp.models.gpt.generate` and :func:`~jaxcomp.models.kv_cache.decode_logits`
run unchanged on the converted weights. Embeddings and LayerNorms stay float32.

Modes (``s_x`` dynamic per token, ``s_w`` per output channel or per group):

* ``"bf16"``: bf16 kernel, activations cast to bf16, ``dot_general -> f32``.
* ``"w8a8"``: int8 kernel and int8 activations, ``dot_general(int8, int8) -> int32``,
  then ``· s_x · s_w``.
* ``"fp8"``: e4m3 kernel and activations, ``dot_general(e4m3, e4m3) -> f32``, then
  ``· s_x · s_w``.
* ``"w8a16"``: int8 kernel with a float32 scale per (``group_size`` inputs, output);
  float activations; dequantized next to the dot (XLA fuses it).
* ``"w4a16"``: as ``w8a16`` with int4 codes packed two per byte (uint8 ``(in/2, out)``:
  row ``i`` in the low nibble, row ``i + in/2`` in the high one, each code + 8).

Weights use :mod:`jaxcomp.quant.formats`' quantizers (``int8``/``int4`` symmetric,
``fp8_e4m3``); activations use the KV cache's per-token absmax quantizer
(:func:`jaxcomp.models.kv_cache.quantize_kv`). ``fake=True`` builds the same
module computing in float32 on the dequantized values (the fake-quant reference).
On XLA:CPU the fp8 dot is run by upcasting its inputs to f32 (no fp8 units).

Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from jaxcomp.models.gpt import GPT, generate
    >>> gpt = GPT(num_layers=1, width=32, num_heads=4, context=16, rngs=nnx.Rngs(0))
    >>> q = convert_gpt(gpt, "w8a8")
    >>> type(q.blocks[0].attn.q).__name__, q.blocks[0].attn.q.w[...].dtype
    ('QuantLinear', dtype('int8'))
    >>> x = jnp.arange(8)[None]
    >>> bool(jnp.allclose(q(x), convert_gpt(gpt, "w8a8", fake=True)(x), atol=1e-4))
    True
    >>> generate(q, x, 2).shape
    (1, 10)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxcomp.core.errors import ConfigError, check_choice
from jaxcomp.models.kv_cache import quantize_kv
from jaxcomp.quant.formats import get_format

MODES = ("bf16", "w8a8", "fp8", "w8a16", "w4a16")
_HI = jax.lax.Precision.HIGHEST


class LowpWeight(nnx.Variable):
    """A converted kernel's codes or scales (an ``nnx.Variable``, not a trainable ``Param``)."""


def _weight_format(mode: str, group_size: int):
    if mode == "w8a8":
        return get_format("int8", axis=-1)
    if mode == "fp8":
        return get_format("fp8_e4m3", axis=-1)
    return get_format("int8" if mode == "w8a16" else "int4", axis=-1, group_size=group_size)


def quantize_kernel(w: jax.Array, mode: str, *, group_size: int = 64,
                    what: str = "kernel") -> dict[str, jax.Array]:
    """Stored form ``{"w", "scale"}`` (``{"w"}`` for bf16) of a kernel ``(in, out)``.

    Example:
        >>> import jax.numpy as jnp
        >>> p = quantize_kernel(jnp.ones((8, 3)), "w4a16", group_size=4)
        >>> p["w"].dtype, p["w"].shape, p["scale"].shape, hex(int(p["w"][0, 0]))
        (dtype('uint8'), (4, 3), (2, 3), '0xff')
    """
    check_choice("lowp mode", mode, MODES)
    w = jnp.asarray(w, jnp.float32)
    if w.ndim != 2:
        raise ConfigError(f"{what}: shape {w.shape}; QuantLinear needs a 2-D (in, out) kernel")
    if mode == "bf16":
        return {"w": w.astype(jnp.bfloat16)}
    if mode == "w4a16" and w.shape[0] % 2:
        raise ConfigError(f"{what}: {w.shape[0]} input features; int4 packing needs an even "
                          f"number")
    f = _weight_format(mode, group_size)
    f.check_shape(tuple(w.shape), what)
    parts = f.quantize_parts(w)
    q, scale = parts["q"], parts["scale"].astype(jnp.float32)
    if mode == "fp8":
        return {"w": q.astype(jnp.float8_e4m3fn), "scale": scale}
    if mode == "w4a16":
        u, half = q.astype(jnp.int32) + 8, w.shape[0] // 2
        return {"w": (u[:half] | (u[half:] << 4)).astype(jnp.uint8), "scale": scale}
    return {"w": q.astype(jnp.int8), "scale": scale}


def dequantize_kernel(parts: dict[str, jax.Array], mode: str,
                      dtype: Any = jnp.float32) -> jax.Array:
    """The float kernel a stored form stands for (group scales expanded)."""
    w = parts["w"]
    if mode == "w4a16":
        c = w.astype(jnp.int32)
        w = jnp.concatenate([(c & 15) - 8, (c >> 4) - 8], axis=0)
    w = w.astype(dtype)
    if "scale" not in parts:
        return w
    s = parts["scale"].astype(dtype)
    groups = s.shape[0]
    return (w.reshape(groups, -1, w.shape[1]) * s[:, None, :]).reshape(w.shape)


def lowp_dense(x: jax.Array, parts: dict[str, jax.Array], mode: str, *,
               fake: bool = False) -> jax.Array:
    """``x @ kernel`` (float32 result) in ``mode``; ``fake=True`` is the float reference."""
    dims = (((x.ndim - 1,), (0,)), ((), ()))
    if mode == "bf16":
        if fake:
            xb = x.astype(jnp.bfloat16).astype(jnp.float32)
            return jax.lax.dot_general(xb, parts["w"].astype(jnp.float32), dims, precision=_HI)
        return jax.lax.dot_general(x.astype(jnp.bfloat16), parts["w"], dims,
                                   preferred_element_type=jnp.float32)
    if mode in ("w8a16", "w4a16"):
        w = dequantize_kernel(parts, mode)
        return jax.lax.dot_general(x.astype(jnp.float32), w, dims, precision=_HI)
    qx, sx = quantize_kv(x, "int8" if mode == "w8a8" else "fp8")
    sw = parts["scale"][0]
    if fake:
        xf = qx.astype(jnp.float32) * sx[..., None]
        wf = parts["w"].astype(jnp.float32) * sw
        return jax.lax.dot_general(xf, wf, dims, precision=_HI)
    acc = jnp.int32 if mode == "w8a8" else jnp.float32
    y = jax.lax.dot_general(qx, parts["w"], dims, preferred_element_type=acc)
    return y.astype(jnp.float32) * sx[..., None] * sw


class QuantLinear(nnx.Module):
    """A linear layer with a converted kernel (see the module docstring's table).

    Args:
      kernel: the float ``(in, out)`` kernel; bias: its bias or ``None``.
      mode: one of :data:`MODES`; group_size: inputs per scale for ``w8a16``/``w4a16``.
      fake: compute in float32 on dequantized values (the fake-quant reference).
    """

    def __init__(self, kernel: jax.Array, bias: jax.Array | None, mode: str, *,
                 group_size: int = 64, fake: bool = False, what: str = "kernel"):
        parts = quantize_kernel(kernel, mode, group_size=group_size, what=what)
        self.mode, self.fake = mode, bool(fake)
        self.in_features, self.out_features = kernel.shape
        self.w = LowpWeight(parts["w"])
        self.scale = LowpWeight(parts["scale"]) if "scale" in parts else None
        self.bias = None if bias is None else nnx.Param(jnp.asarray(bias, jnp.float32))

    def parts(self) -> dict[str, jax.Array]:
        """The stored ``{"w", "scale"}`` arrays."""
        out = {"w": self.w[...]}
        if self.scale is not None:
            out["scale"] = self.scale[...]
        return out

    def __call__(self, x: jax.Array) -> jax.Array:
        y = lowp_dense(x, self.parts(), self.mode, fake=self.fake)
        if self.bias is not None:
            y = y + self.bias[...]
        return y.astype(x.dtype)


def _linears(gpt: nnx.Module, head: bool):
    for i, block in enumerate(gpt.blocks):
        for parent, sub, names in ((block.attn, "attn", ("q", "k", "v", "o")),
                                   (block.mlp, "mlp", ("up", "gate", "down"))):
            for n in names:
                if isinstance(getattr(parent, n, None), nnx.Linear):
                    yield parent, n, f"blocks/{i}/{sub}/{n}/kernel"
    if head and isinstance(getattr(gpt, "head", None), nnx.Linear):
        yield gpt, "head", "head/kernel"


def convert_gpt(gpt: nnx.Module, mode: str, *, group_size: int = 64, fake: bool = False,
                head: bool = False) -> nnx.Module:
    """A copy of ``gpt`` whose linear layers are :class:`QuantLinear` in ``mode``
    (``"fp32"`` returns an unchanged copy). ``gpt`` itself is not modified."""
    check_choice("lowp mode", mode, ("fp32",) + MODES)
    if mode != "fp32" and mode in ("w8a16", "w4a16") and (
            not isinstance(group_size, int) or group_size < 1):
        raise ConfigError(f"lowp group_size: got {group_size!r}; must be a positive int "
                          f"dividing every kernel's input features (32, 64, 128 are usual)")
    out = nnx.clone(gpt)
    if mode == "fp32":
        return out
    for parent, name, path in list(_linears(out, head)):
        lin = getattr(parent, name)
        bias = None if lin.bias is None else lin.bias[...]
        setattr(parent, name, QuantLinear(lin.kernel[...], bias, mode, group_size=group_size,
                                          fake=fake, what=path))
    return out


def weight_bytes(model: nnx.Module) -> int:
    """Bytes of every array a model holds (params, converted codes and scales)."""
    _, state = nnx.split(model)
    return int(sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state)))


__all__ = ["MODES", "LowpWeight", "QuantLinear", "convert_gpt", "dequantize_kernel",
           "lowp_dense", "quantize_kernel", "weight_bytes"]
