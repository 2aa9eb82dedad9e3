"""Export a LoRA-tuned model: merge the adapters into the kernels and save plain params.

The saved tree is exactly what :func:`jaxcomp.lora.merge` returns (a QLoRA base is
dequantized first), written with orbax as one array per leaf
(:func:`jaxcomp.quant.export.save`), so the fine-tuned model loads as an ordinary
model with no LoRA code.

Example:
    >>> import os, tempfile, jax, jax.numpy as jnp
    >>> from jaxcomp import lora
    >>> lp = lora.init_params({"d": {"kernel": jnp.ones((4, 4))}}, 2, key=jax.random.key(0))
    >>> path = os.path.join(tempfile.mkdtemp(), "merged")
    >>> merged = lora.export(path, lp)
    >>> sorted(lora.restore(path)["d"])
    ['kernel']
"""

from __future__ import annotations

from typing import Any

from jaxcomp.lora.adapters import merge


def export(path: str, params: Any, base: Any = None) -> Any:
    """Merge (``W + scale * A @ B``), save to ``path`` (a new folder), return the merged params."""
    from jaxcomp.quant.export import save

    merged = merge(params, base)
    save(path, merged)
    return merged


def restore(path: str, like: Any | None = None) -> Any:
    """Load params saved by :func:`export` (numpy arrays; ``like`` gives the structure)."""
    from jaxcomp.quant.export import restore as _restore

    return _restore(path, like)
