"""Hadamard rotations (QuaRot-style) that remove activation outliers without
changing the float network.

An orthogonal ``Q`` (``Q Qᵀ = I``) inserted between a writer and a reader,
``(x W1 + b1) W2 = ((x W1 + b1) Q)(Qᵀ W2)``, spreads a few large channels over
all of them, so per-token activation quantization (W4A4) loses much less.
A randomized Hadamard matrix ``Q = diag(±1) H / sqrt(n)`` is orthogonal and
can be applied online in ``O(n log n)`` (here: a matmul).

Sizes: ``n = 2^k`` (Sylvester), or ``n = 2^k · m`` with ``m = p + 1`` for a
prime ``p ≡ 3 (mod 4)`` (a Paley matrix, e.g. ``m`` = 12, 20, 24, 44, 48, 60):
768 = 64·12 and 5120 = 256·20 work; other sizes raise a ConfigError.

**Rotating the residual stream of a pre-norm transformer** needs the norm to
commute with ``Q``. ``RMSNorm`` without its scale does (``rms(xQ) = rms(x)``);
so, in this order:

1. fold every norm's scale / shift into the linears that read it
   (:func:`fold_norm_into_linear`; the norm keeps unit scale, no shift);
2. a **LayerNorm** also subtracts the mean, which does not commute with ``Q``:
   center every writer of the stream (embedding, attention output, MLP
   down-projection; :func:`center_writer`) so the stream has zero mean, then
   the LayerNorm equals an RMSNorm (same ``eps``) and can be treated as one;
3. multiply every writer's output columns by ``Q`` (:func:`rotate_writer`)
   and every reader's input rows by ``Qᵀ`` (:func:`rotate_reader`), the
   output head included.

**Online rotation** of the MLP down-projection input ``u`` (no norm in
between): ``u W_down = (u H)(Hᵀ W_down)``; :func:`rotate_reader` gives the
kernel, :func:`online_rotate` applies ``H`` to ``u`` at run time, before the
activation quantizer.

Example:
    >>> import jax, jax.numpy as jnp
    >>> q = random_hadamard(12, jax.random.key(0))
    >>> bool(jnp.allclose(q @ q.T, jnp.eye(12), atol=1e-6))
    True
    >>> w1, w2 = jnp.ones((4, 12)), jnp.arange(24.0).reshape(12, 2)
    >>> a, b, c = rotate_linear_pair(w1, jnp.zeros(12), w2, q)
    >>> x = jnp.ones((3, 4))
    >>> bool(jnp.allclose(((x @ a) + b) @ c, x @ w1 @ w2, rtol=1e-5))
    True

References:
    Ashkboos et al. 2024, "QuaRot: Outlier-Free 4-Bit Inference in Rotated
    LLMs"; Ashkboos et al. 2024, "SliceGPT" (LayerNorm to RMSNorm).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxcomp.core.errors import ConfigError


def _is_prime(p: int) -> bool:
    return p > 1 and all(p % d for d in range(2, int(p ** 0.5) + 1))


def _paley(m: int) -> np.ndarray:
    """Paley construction I: a Hadamard matrix of order ``m = p + 1``, ``p ≡ 3 mod 4``."""
    p = m - 1
    sq = {(i * i) % p for i in range(1, p)}
    chi = np.array([0] + [1 if i in sq else -1 for i in range(1, p)])
    jac = chi[(np.arange(p)[None, :] - np.arange(p)[:, None]) % p]
    s = np.zeros((m, m), np.int64)
    s[0, 1:] = 1
    s[1:, 0] = -1
    s[1:, 1:] = jac
    return s + np.eye(m, dtype=np.int64)


def _factor(n: int) -> tuple[int, int] | None:
    """``(2^k, m)`` with ``n = 2^k m`` and a known order-``m`` Hadamard matrix."""
    if n >= 1 and n & (n - 1) == 0:
        return n, 1
    pw = 1
    while n % (2 * pw) == 0:
        pw *= 2
        m = n // pw
        if m % 4 == 0 and _is_prime(m - 1) and (m - 1) % 4 == 3:
            return pw, m
    m = n
    if m % 4 == 0 and _is_prime(m - 1) and (m - 1) % 4 == 3:
        return 1, m
    return None


@functools.lru_cache(maxsize=32)
def hadamard(n: int) -> np.ndarray:
    """A Hadamard matrix (entries ±1, ``H Hᵀ = n I``) of order ``n``.

    Example:
        >>> hadamard(2).tolist()
        [[1.0, 1.0], [1.0, -1.0]]
    """
    f = _factor(int(n)) if isinstance(n, int | np.integer) and n > 0 else None
    if f is None:
        raise ConfigError(f"hadamard: size n={n!r} is not supported; allowed: a power of 2 "
                          "or 2^k * (p + 1) with p a prime ≡ 3 (mod 4), e.g. 12, 20, 24, 44, "
                          "48, 60, 768 = 64*12; pad the dimension or rotate a sub-block")
    pw, m = f
    h = np.array([[1]])
    while h.shape[0] < pw:
        h = np.block([[h, h], [h, -h]])
    if m > 1:
        h = np.kron(h, _paley(m))
    out = h.astype(np.float32)
    out.setflags(write=False)
    return out


def random_hadamard(n: int, key: jax.Array) -> jax.Array:
    """An orthogonal ``diag(±1) H / sqrt(n)`` with random signs from ``key``."""
    h = jnp.asarray(hadamard(n)) / np.sqrt(n)
    signs = jnp.where(jax.random.bernoulli(key, 0.5, (n,)), 1.0, -1.0)
    return signs[:, None] * h


def rotate_writer(w: jax.Array, b: jax.Array | None, q: jax.Array
                  ) -> tuple[jax.Array, jax.Array | None]:
    """A stream writer's kernel ``(in, d)`` and bias with outputs rotated: ``W Q``, ``b Q``."""
    return w @ q, (None if b is None else b @ q)


def rotate_reader(w: jax.Array, q: jax.Array) -> jax.Array:
    """A stream reader's kernel ``(d, out)`` for rotated inputs: ``Qᵀ W``."""
    return q.T @ w


def rotate_linear_pair(w1: jax.Array, b1: jax.Array | None, w2: jax.Array, q: jax.Array
                       ) -> tuple[jax.Array, jax.Array | None, jax.Array]:
    """``(W1 Q, b1 Q, Qᵀ W2)``: the pair computes the same ``(x W1 + b1) W2``."""
    w1r, b1r = rotate_writer(w1, b1, q)
    return w1r, b1r, rotate_reader(w2, q)


def online_rotate(x: jax.Array, q: jax.Array) -> jax.Array:
    """``x Q`` over the last axis (e.g. the MLP down-projection's input)."""
    return x @ q


def fold_norm_into_linear(gamma: jax.Array, beta: jax.Array | None, w: jax.Array,
                          b: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Fold ``norm(x) * gamma + beta`` into a reader ``W, b``: ``diag(γ) W``, ``b + β W``."""
    bias = jnp.zeros(w.shape[1], w.dtype) if b is None else b
    if beta is not None:
        bias = bias + beta @ w
    return gamma[:, None] * w, bias


def center_writer(w: jax.Array, b: jax.Array | None = None
                  ) -> tuple[jax.Array, jax.Array | None]:
    """A writer whose outputs have zero mean over the stream's channels."""
    return (w - w.mean(axis=1, keepdims=True),
            None if b is None else b - b.mean())
