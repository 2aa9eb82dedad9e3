"""Input jitter: shift each image by a random number of pixels (zero fill) —
the teacher's augmentation in Hinton et al. 2015 ("jittered by up to two pixels").

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp.distill.augment import jitter
    >>> x = jnp.arange(2 * 5 * 5, dtype=jnp.float32).reshape(2, 5, 5, 1)
    >>> jitter(x, jax.random.key(0), max_shift=0).tolist() == x.tolist()
    True
    >>> jitter(x, jax.random.key(0), max_shift=2).shape
    (2, 5, 5, 1)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxcomp.core.errors import ConfigError


def shift_image(img: jax.Array, dy: jax.Array, dx: jax.Array, max_shift: int) -> jax.Array:
    """``img`` (H, W, C) moved by ``(dy, dx)`` pixels with zeros shifted in."""
    h, w = img.shape[0], img.shape[1]
    pad = jnp.pad(img, ((max_shift, max_shift), (max_shift, max_shift), (0, 0)))
    return jax.lax.dynamic_slice(pad, (max_shift - dy, max_shift - dx, 0), (h, w, img.shape[2]))


def jitter(x: jax.Array, key: jax.Array, max_shift: int = 2) -> jax.Array:
    """Shift each image of ``x`` (N, H, W, C) by its own offsets in ``[-max_shift, max_shift]``."""
    if x.ndim != 4:
        raise ConfigError(f"jitter: expects images (N, H, W, C); got shape {tuple(x.shape)}")
    from jaxcomp.core.errors import check_number

    check_number("jitter.max_shift", max_shift, integer=True)
    if isinstance(max_shift, float):
        raise ConfigError(f"jitter.max_shift: got {max_shift!r}; expected an integer")
    if max_shift < 0:
        raise ConfigError(f"jitter.max_shift: got {max_shift}; allowed range [0, inf)")
    if max_shift == 0:
        return x
    d = jax.random.randint(key, (x.shape[0], 2), -max_shift, max_shift + 1)
    return jax.vmap(lambda im, s: shift_image(im, s[0], s[1], max_shift))(x, d)
