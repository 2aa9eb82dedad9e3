"""QLoRA: the frozen base kernels held as packed 4-bit codes plus scales, adapters in float.

:func:`quantize_base` takes params with adapters (:func:`jaxcomp.lora.init_params`),
quantizes each adapted kernel with a :mod:`jaxcomp.quant.formats` format — ``"nf4"``
(block 64 along the input features, float32 absmax) or ``"int4"`` group-wise
(``group_size=64``, one float32 scale per output channel and group) — removes the
kernels from the params and returns them as a :class:`QuantBase`: codes packed two
per byte (``uint8``) and the format's scales, all JAX arrays, so it is the LoRA
transform's state and lives on the device at about 4.5 bits per weight. ``apply``
unpacks and dequantizes them with the format's own ``dequantize_parts`` (the values
equal the format's ``fake_quant`` / ``decode``) and adds ``scale * A @ B``.

The params left hold no base kernel, so gradients never reach it and the optimizer
never sees it; :func:`jaxcomp.lora.freeze_base` still freezes the other base leaves
(embeddings, norms).

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp import lora
    >>> from jaxcomp.quant.formats import get_format
    >>> w = jax.random.normal(jax.random.key(0), (128, 32))
    >>> lp = lora.init_params({"d": {"kernel": w}}, 4, key=jax.random.key(1))
    >>> lp, base = lora.quantize_base(lp, "int4", group_size=64)
    >>> sorted(lp["d"]), base.nbytes, base.fp32_bytes
    (['lora_a', 'lora_b', 'lora_scale'], 2304, 16384)
    >>> ref = get_format("int4", group_size=64).fake_quant(w)
    >>> bool((base.dequantize()["d/kernel"] == ref).all())
    True

References:
    Dettmers et al. 2023, "QLoRA: Efficient Finetuning of Quantized LLMs".
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcomp.core.errors import ConfigError
from jaxcomp.lora.adapters import adapted, as_dicts

_CODE = {"NF4Format": "code", "IntFormat": "q"}


def _format(name: str, opts: tuple) -> Any:
    from jaxcomp.quant.formats import get_format

    return get_format(name, **dict(opts))


def _code_info(f: Any) -> tuple[str, int, int]:
    """``(code part name, bits, offset to unsigned)`` of a format LoRA can hold packed."""
    kind = type(f).__name__
    if kind == "NF4Format":
        return "code", 4, 0
    if kind == "IntFormat" and f.bits in (4, 8):
        return "q", f.bits, 2 ** (f.bits - 1)
    raise ConfigError(f"lora.quantize_base: format {f.name!r}; allowed 'nf4' or 'int4' / "
                      "'int8' (group-wise with group_size=64 is usual)")


def pack_codes(codes: jax.Array, bits: int) -> jax.Array:
    """Unsigned codes (any shape) as flat ``uint8``: two 4-bit codes per byte (low first).

    Example:
        >>> import jax.numpy as jnp
        >>> pack_codes(jnp.array([1, 2, 3]), 4).tolist()
        [33, 3]
    """
    c = jnp.ravel(codes).astype(jnp.uint8)
    if bits == 8:
        return c
    c = jnp.concatenate([c, jnp.zeros(c.size % 2, jnp.uint8)])
    return c[0::2] | (c[1::2] << 4)


def unpack_codes(buf: jax.Array, bits: int, n: int) -> jax.Array:
    """The first ``n`` codes of :func:`pack_codes`'s bytes (``int32``, flat)."""
    buf = buf.astype(jnp.int32)
    if bits == 8:
        return buf[:n]
    return jnp.stack([buf & 15, buf >> 4], axis=-1).reshape(-1)[:n]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class QuantBase:
    """Quantized base kernels: ``arrays[path]`` = ``{"codes": uint8, <scales>}``.

    ``meta`` (static) holds ``(path, format name, options, shape, dtype)`` per kernel.
    A pytree: it passes through ``jit`` and checkpoints as the transform's state.
    """

    arrays: dict[str, dict[str, jax.Array]]
    meta: tuple = dataclasses.field(metadata={"static": True}, default=())

    @property
    def nbytes(self) -> int:
        """Bytes of the codes and scales in memory."""
        return int(sum(np.dtype(x.dtype).itemsize * math.prod(x.shape)
                       for x in jax.tree.leaves(self.arrays)))

    @property
    def fp32_bytes(self) -> int:
        """Bytes the same kernels take in float32."""
        return int(sum(4 * math.prod(m[3]) for m in self.meta))

    def dequantize(self) -> dict[str, jax.Array]:
        """``{kernel path: dequantized kernel}`` (jit-safe)."""
        return {m[0]: _dequantize(m, self.arrays[m[0]]) for m in self.meta}


def _dequantize(meta: tuple, arrays: dict[str, jax.Array]) -> jax.Array:
    path, name, opts, shape, dtype = meta
    f = _format(name, opts)
    key, bits, offset = _code_info(f)
    spec = jax.eval_shape(f.quantize_parts, jax.ShapeDtypeStruct(shape, jnp.float32))
    code_shape = spec[key].shape
    codes = unpack_codes(arrays["codes"], bits, math.prod(code_shape)).reshape(code_shape)
    parts = {k: v for k, v in arrays.items() if k != "codes"}
    parts[key] = codes if key == "code" else (codes - offset).astype(jnp.float32)
    if key == "q" and "zero_point" not in parts:
        parts["zero_point"] = jnp.zeros(spec["zero_point"].shape, jnp.float32)
    del path
    return f.dequantize_parts(parts, shape).astype(dtype)


def quantize_base(params: Any, format: str = "nf4", **opts: Any) -> tuple[Any, QuantBase]:
    """Move every adapted kernel out of ``params`` into a packed 4-bit :class:`QuantBase`.

    Args:
      params: params with adapters (:func:`jaxcomp.lora.init_params`), kernels in place.
      format: ``"nf4"`` (default block 64) or ``"int4"`` (pass ``group_size=64`` for
        group-wise scales); ``"int8"`` is allowed too.
      **opts: format options (``block_size``, ``group_size``, ``symmetric``...).

    Returns:
      ``(params without the adapted kernels, QuantBase)``; give the base to
      :func:`jaxcomp.lora.transform` (and :func:`jaxcomp.lora.merge`).

    Raises:
      ConfigError: no adapters, an unknown format, or a kernel whose input size the
        block / group size does not divide (the path and shape are named).
    """
    from jaxcomp.quant.formats import get_format

    f = get_format(format, **opts)
    key, bits, offset = _code_info(f)
    tree = as_dicts(params)
    found = adapted(tree)
    if not found:
        raise ConfigError("lora.quantize_base: params carry no adapters; build them with "
                          "lora.init_params first")
    arrays, meta = {}, []
    opt_items = tuple(sorted(f.options().items()))
    for path, parent, name in found:
        if name not in parent:
            raise ConfigError(f"lora.quantize_base: {path} is already quantized (no kernel)")
        w = jnp.asarray(parent.pop(name))
        f.check_shape(tuple(w.shape), what=path)
        parts = jax.jit(f.quantize_parts)(w.astype(jnp.float32))
        code = parts.pop(key)
        if key == "q":
            code = code.astype(jnp.int32) + offset
            if f.symmetric:
                parts.pop("zero_point")
        packed = {"codes": pack_codes(code, bits)}
        packed.update({k: jnp.asarray(v, jnp.float32) for k, v in parts.items()})
        arrays[path] = packed
        meta.append((path, f.name, opt_items, tuple(w.shape), str(w.dtype)))
    return tree, QuantBase(arrays, tuple(meta))
