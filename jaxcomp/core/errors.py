"""One exception type for every bad input jaxcomp detects.

A :class:`ConfigError` names the offending parameter (a config key or a
parameter path), the value it got and what is allowed. The CLI prints its
message on one line and exits with status 2; library callers can catch it as a
``ValueError``. This module does not import JAX (the CLI reports config errors
before JAX is loaded).

Example:
    >>> from jaxcomp.core.errors import ConfigError, check_range
    >>> check_range("prune.sparsity", 0.5, 0.0, 1.0, hi_open=True)
    0.5
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Iterable
from typing import Any


class ConfigError(ValueError):
    """A user-facing error: bad config value, bad selection, bad shape."""


class PathError(ConfigError, KeyError):
    """A parameter path that is not in the tree (also a ``KeyError``, for old callers)."""

    __str__ = ValueError.__str__


def nearest(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The up-to-``n`` candidates most similar to ``name`` (difflib ratio)."""
    cands = list(candidates)
    close = difflib.get_close_matches(name, cands, n=n, cutoff=0.0)
    return close[:n]


def suggest(name: str, candidates: Iterable[str]) -> str:
    """A short 'did you mean ...' clause, or an empty string."""
    close = nearest(name, candidates, n=3)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


def check_choice(what: str, value: Any, allowed: Iterable[Any]) -> Any:
    """Raise ConfigError unless ``value`` is one of ``allowed``."""
    allowed = list(allowed)
    if value not in allowed:
        hint = suggest(str(value), [str(a) for a in allowed])
        raise ConfigError(
            f"{what}: got {value!r}; allowed: {', '.join(map(repr, allowed))}{hint}"
        )
    return value


def check_range(what: str, value: Any, lo: float | None = None, hi: float | None = None, *,
                lo_open: bool = False, hi_open: bool = False) -> Any:
    """Raise ConfigError unless ``lo <= value <= hi`` (bounds optionally open).

    Works on Python numbers and concrete numpy/JAX scalars or arrays (every
    element is checked). Traced values pass through; under
    :func:`jaxcomp.core.checked` they are checked when the program runs.
    """
    import numpy as np

    if isinstance(value, str | bytes) or (isinstance(value, np.ndarray)
                                          and value.dtype.kind in "USO") or \
            (isinstance(value, list | tuple) and any(isinstance(v, str | bytes) for v in value)):
        raise ConfigError(f"{what}: got {value!r}; expected a number, not text")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except Exception:  # a tracer or a non-number
        if _is_tracer(value):  # checked later, in checked mode only (jaxcomp.core.checked)
            from jaxcomp.core.checked import check_traced_range

            return check_traced_range(what, value, lo, hi, lo_open=lo_open, hi_open=hi_open)
        raise ConfigError(f"{what}: got {value!r}; expected a number") from None
    if arr.size and not np.all(np.isfinite(arr)):
        raise ConfigError(f"{what}: got {value!r}; expected a finite number")
    bad = np.zeros(arr.shape, bool)
    if lo is not None:
        bad |= (arr <= lo) if lo_open else (arr < lo)
    if hi is not None:
        bad |= (arr >= hi) if hi_open else (arr > hi)
    if np.any(bad):
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        lo_s = "-inf" if lo is None else f"{lo:g}"
        hi_s = "inf" if hi is None else f"{hi:g}"
        raise ConfigError(f"{what}: got {value!r}; allowed range {left}{lo_s}, {hi_s}{right}")
    return value


def _is_tracer(x: Any) -> bool:
    jax = sys.modules.get("jax")  # no JAX imported yet: nothing can be a tracer
    return jax is not None and isinstance(x, jax.core.Tracer)


def check_number(what: str, value: Any, lo: float | None = None, hi: float | None = None, *,
                 lo_open: bool = False, hi_open: bool = False, integer: bool = False) -> Any:
    """:func:`check_range` for one number: ``None``, a list/tuple/dict or a bool is refused,
    and with ``integer=True`` a fractional value too. Arrays (a sweep's batch of values)
    and traced values are allowed, as in :func:`check_range`.

    Example:
        >>> check_number("every", 3, 1, None, integer=True)
        3
    """
    kind = "an integer" if integer else "a number"
    if value is None or isinstance(value, bool | list | tuple | dict | set):
        raise ConfigError(f"{what}: got {value!r}; expected {kind}")
    check_range(what, value, lo, hi, lo_open=lo_open, hi_open=hi_open)
    if integer and not _is_tracer(value):
        import numpy as np

        arr = np.asarray(value)
        if arr.dtype.kind == "f" and np.any(np.floor(arr) != arr):
            raise ConfigError(f"{what}: got {value!r}; expected {kind}")
        if arr.dtype.kind not in "iuf":
            raise ConfigError(f"{what}: got {value!r}; expected {kind}")
    return value


def check_bool(what: str, value: Any) -> bool:
    """ConfigError unless ``value`` is a bool (``"no"`` would otherwise count as true)."""
    import numpy as np

    if not isinstance(value, bool | np.bool_):
        raise ConfigError(f"{what}: got {value!r}; expected a bool (True or False)")
    return bool(value)
