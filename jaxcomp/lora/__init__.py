"""LoRA and QLoRA: low-rank adapters beside frozen (optionally 4-bit) linear kernels.

* :func:`init_params` adds ``lora_a`` ``(in, r)``, ``lora_b`` ``(r, out)`` and
  ``lora_scale`` (``alpha / r``) leaves beside each selected kernel (``where=``);
  ``init="pissa"`` takes them from the kernel's top-``r`` SVD (base = residual).
* :func:`transform` is the :class:`~jaxcomp.core.transform.Transform` whose ``apply``
  merges ``W + scale * A @ B`` (give it to ``jaxcomp.train.fit(transform=...)``);
  :func:`merge` does the same once, :func:`export` saves the merged model.
* :func:`freeze_base` wraps an optax optimizer so only the adapters train and the
  frozen leaves carry no optimizer state.
* :func:`quantize_base` stores the frozen kernels as packed NF4 / int4 codes plus
  scales (:class:`QuantBase`, the transform's state), dequantized in ``apply``.

Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> from jaxcomp import lora
    >>> params = {"Dense_0": {"kernel": jax.random.normal(jax.random.key(0), (64, 64))}}
    >>> lp = lora.init_params(params, 8, key=jax.random.key(1))
    >>> lp, base = lora.quantize_base(lp, "nf4")
    >>> t = lora.transform(base)
    >>> t.apply(lp, t.init(lp))["Dense_0"]["kernel"].shape
    (64, 64)
    >>> round(base.nbytes / base.fp32_bytes, 4)
    0.1406
"""

from jaxcomp.lora.adapters import (
    adapted,
    adapter_names,
    count_params,
    init_params,
    is_adapter_path,
    merge,
    trainable,
    transform,
)
from jaxcomp.lora.export import export, restore
from jaxcomp.lora.optim import freeze_base, labels, tree_bytes
from jaxcomp.lora.qlora import QuantBase, quantize_base

__all__ = [
    "QuantBase", "adapted", "adapter_names", "count_params", "export", "freeze_base",
    "init_params", "is_adapter_path", "labels", "merge", "quantize_base", "restore",
    "trainable", "transform", "tree_bytes",
]
