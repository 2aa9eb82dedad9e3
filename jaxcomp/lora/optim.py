"""Train only the adapters: an optax wrapper whose frozen leaves carry no optimizer state.

:func:`freeze_base` is ``optax.multi_transform`` with two labels: ``"train"`` (the
adapters ``A``/``B``, plus any ``extra`` rules) gets ``tx``; ``"frozen"`` (base
kernels, embeddings, norms, the ``lora_scale`` leaves) gets ``optax.set_to_zero()``.
``tx`` is initialized on the trainable leaves only (optax masks the others with
empty nodes), so Adam's moments exist for the adapters alone: the state bytes of
frozen leaves are zero, and their updates are exact zeros (``p + 0`` leaves them
bitwise unchanged). In a jitted step XLA drops the unused gradients of the
frozen leaves.

Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> from jaxcomp import lora
    >>> p = lora.init_params({"d": {"kernel": jnp.ones((64, 64))}}, 4, key=jax.random.key(0))
    >>> tx = lora.freeze_base(optax.adam(1e-3))
    >>> state = tx.init(p)
    >>> lora.tree_bytes(state)         # Adam: mu, nu of A (64, 4) and B (4, 64), an int32 count
    4100
    >>> u, _ = tx.update(jax.tree.map(jnp.ones_like, p), state, p)
    >>> float(jnp.abs(u["d"]["kernel"]).max())
    0.0
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
import optax

from jaxcomp.core import paths
from jaxcomp.core.errors import ConfigError
from jaxcomp.lora.adapters import trainable


def labels(params: Any, extra: Any = None) -> Any:
    """A tree like ``params`` of ``"train"`` / ``"frozen"`` labels."""
    flags = trainable(params, extra)
    return paths.map_with_path(lambda p, _: "train" if flags[p] else "frozen", params)


def freeze_base(tx: optax.GradientTransformation, *, extra: Any = None
                ) -> optax.GradientTransformation:
    """``tx`` on the adapters (and ``extra`` leaves); exact zero updates, no state elsewhere.

    Args:
      tx: any optax optimizer.
      extra: optional regex rules (:mod:`jaxcomp.core.select`) for more leaves to
        train, e.g. ``".*/bias"`` or ``"head/.*"``.

    Returns:
      An ``optax.GradientTransformation`` for params built by
      :func:`jaxcomp.lora.init_params`.
    """
    if not (callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None))) \
            or hasattr(tx, "apply"):
        raise ConfigError(f"lora.freeze_base: tx is a {type(tx).__name__}; expected an optax "
                          "GradientTransformation (e.g. optax.adam(1e-3))")
    return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()},
                                 lambda params: labels(params, extra))


def tree_bytes(tree: Any) -> int:
    """Bytes of every array leaf of ``tree`` (e.g. an optimizer state)."""
    return int(sum(np.dtype(x.dtype).itemsize * int(np.prod(x.shape))
                   for x in jax.tree.leaves(tree) if hasattr(x, "shape")))
