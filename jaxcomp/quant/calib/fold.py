"""Fold a per-input-channel scale into the op before a linear layer, so the
float network computes the same function.

AWQ and SmoothQuant rewrite a linear ``y = x @ w`` as ``(x / s) @ (diag(s) w)``.
The division by ``s`` is folded into whatever produced ``x``:

* a norm ``x = norm(z) * gamma + beta`` → ``gamma / s``, ``beta / s``
  (:func:`fold_into_norm`);
* a previous linear ``x = z @ w_prev + b_prev`` → its *output columns* ``/ s``
  (:func:`fold_into_linear`);

and the consumer's input rows are multiplied by ``s`` (:func:`scale_inputs`).
Every linear that reads the same ``x`` (e.g. q, k and v after one LayerNorm)
must get the same ``s``: search it on their concatenated kernels.

Example:
    >>> import jax.numpy as jnp
    >>> x, w = jnp.array([[1.0, 2.0]]), jnp.array([[1.0], [3.0]])
    >>> s = jnp.array([2.0, 0.5])
    >>> g, b = fold_into_norm(jnp.ones(2), jnp.zeros(2), s)
    >>> ((x * g + b) @ scale_inputs(w, s)).tolist() == (x @ w).tolist()
    True
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def scale_inputs(w: jax.Array, s: jax.Array) -> jax.Array:
    """``diag(s) @ w`` for an ``(in, out)`` kernel (the consumer side)."""
    return w * s[:, None]


def fold_into_norm(gamma: jax.Array, beta: jax.Array | None, s: jax.Array
                   ) -> tuple[jax.Array, jax.Array | None]:
    """A norm's scale and shift divided by ``s`` (``beta`` may be ``None``)."""
    return gamma / s, (None if beta is None else beta / s)


def fold_into_linear(w_prev: jax.Array, b_prev: jax.Array | None, s: jax.Array
                     ) -> tuple[jax.Array, jax.Array | None]:
    """A previous linear's output columns (and bias) divided by ``s``."""
    return w_prev / s[None, :], (None if b_prev is None else b_prev / s)


def concat_out(*ws: jax.Array) -> jax.Array:
    """Kernels that read the same input, side by side ``(in, sum(out))``."""
    return jnp.concatenate(ws, axis=1)
