"""Classification losses and metrics on logits.

Example:
    >>> import jax.numpy as jnp
    >>> from jaxcomp.train.losses import cross_entropy
    >>> round(float(cross_entropy(jnp.zeros((2, 4)), jnp.array([0, 3]))), 4)
    1.3863
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy with integer labels."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32))
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))


def per_example_nll(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Negative log-likelihood of each example."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32))
    return -jnp.take_along_axis(logp, labels[:, None], axis=1)[:, 0]


def correct(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """1.0 where the arg-max class is the label."""
    return (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
