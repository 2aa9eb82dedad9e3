"""Validation of decomposition requests: ranks, shapes, energies (clear ConfigErrors).

Every check names the layer path (``what``), the value and the allowed range.

Example:
    >>> from jaxcomp.decompose._checks import check_rank
    >>> check_rank("Dense_0/kernel", 4, 10)
    4
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jaxcomp.core.errors import ConfigError, check_range

METHODS = ("svd", "tucker2", "cp")  # the decomposition methods, listed once


def check_finite(what: str, x: Any) -> None:
    """NaN or inf weights make every factor NaN: refuse them, naming the layer.

    Traced values (inside ``jit``) cannot be checked here and pass through.

    Example:
        >>> import numpy as np
        >>> try:
        ...     check_finite("Dense_0/kernel", np.array([1.0, np.nan]))
        ... except ConfigError as e:
        ...     print(str(e).split(";")[0])
        Dense_0/kernel: has 1 NaN/inf value(s) among 2
    """
    import numpy as np

    try:
        a = np.asarray(x)
    except Exception:  # a tracer: checked by whoever made the array
        return
    bad = int(a.size - np.count_nonzero(np.isfinite(a)))
    if bad:
        raise ConfigError(f"{what}: has {bad} NaN/inf value(s) among {a.size}; a decomposition "
                          f"needs finite weights (did training diverge?)")


def check_rank(what: str, rank: Any, max_rank: int | None = None) -> int:
    """An integer rank in ``[1, max_rank]``; ConfigError naming ``what`` otherwise."""
    if isinstance(rank, bool) or not isinstance(rank, int | np_integer()):
        raise ConfigError(f"{what}: rank got {rank!r}; expected an integer >= 1")
    hi = "inf" if max_rank is None else str(max_rank)
    if rank < 1 or (max_rank is not None and rank > max_rank):
        raise ConfigError(f"{what}: rank got {rank}; allowed range [1, {hi}]"
                          + ("" if max_rank is None else " (the mode size)"))
    return int(rank)


def np_integer() -> type:
    import numpy as np

    return np.integer


def check_ndim(what: str, shape: Sequence[int], ndim: int, method: str) -> None:
    """Raise unless the kernel has ``ndim`` dimensions (e.g. Tucker-2 needs a 4-D conv kernel)."""
    if len(shape) != ndim:
        raise ConfigError(f"{what}: {method} needs a {ndim}-D kernel; got shape {tuple(shape)}")


def check_energy(what: str, energy: float) -> float:
    """An energy fraction in ``(0, 1]``."""
    check_range(f"{what}: energy", energy, 0.0, 1.0, lo_open=True)
    return float(energy)


def _check_key(what: str, key: Any) -> Any:
    """ConfigError unless ``key`` is a JAX PRNG key (new-style or raw uint32)."""
    import jax

    if key is None or not hasattr(key, "dtype") or not (
            jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) or key.dtype == "uint32"):
        raise ConfigError(f"{what}: got {type(key).__name__}; expected an explicit "
                          "jax.random.key(...)")
    return key


def check_iters(what: str, n_iter: Any, name: str = "n_iter") -> int:
    """An iteration count: an integer ``>= 0``."""
    if isinstance(n_iter, bool) or not isinstance(n_iter, int | np_integer()) or n_iter < 0:
        raise ConfigError(f"{what}: {name} got {n_iter!r}; expected an integer >= 0")
    return int(n_iter)
