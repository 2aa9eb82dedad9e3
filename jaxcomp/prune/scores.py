"""Importance scores: which weights matter. Higher score = keep.

* ``magnitude`` — ``|w|`` (Han et al. 2015; Zhu & Gupta 2017);
* ``random`` — uniform noise drawn from an explicit key (the baseline);
* ``snip`` — connection sensitivity ``|g·w|`` on a batch at initialization (Lee et al. 2019);
* ``taylor`` — first-order Taylor saliency ``|g·w|``, averaged during training
  with an exponential moving average (Molchanov et al. 2017/2019);
* ``movement`` — ``−Σ_t w·g``, accumulated while fine-tuning (Sanh et al. 2020).

A new score is one function and one :func:`register_score` call.

Example:
    >>> import jax.numpy as jnp
    >>> from jaxcomp.prune.scores import score
    >>> score("snip", jnp.array([1., -2.]), jnp.array([0.5, 0.5])).tolist()
    [0.5, 1.0]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxcomp.core.errors import ConfigError, check_choice


@dataclasses.dataclass(frozen=True)
class Score:
    """One importance score: a registry entry.

    ``fn(w, g, key) -> scores`` (higher = keep) for one leaf, in float32;
    ``needs_grads``/``needs_key`` say what ``update`` must be given;
    ``accumulate(acc, w, g, decay) -> acc`` (optional) keeps a running score over
    the steps, which then replaces ``fn`` once it exists.
    """

    name: str
    fn: Callable[[jax.Array, jax.Array | None, Any], jax.Array]
    needs_grads: bool = False
    needs_key: bool = False
    accumulate: Callable[..., jax.Array] | None = None


_REGISTRY: dict[str, Score] = {}


class _Names(Sequence):
    """A live, ordered view of registered score names that satisfy ``pred``
    (with fixed names ``before`` and ``after`` them)."""

    def __init__(self, pred: Callable[[Score], bool] = lambda s: True,
                 before: tuple[str, ...] = (), after: tuple[str, ...] = ()):
        self._pred, self._before, self._after = pred, before, after

    def _names(self) -> tuple[str, ...]:
        return (*self._before, *(n for n, s in _REGISTRY.items() if self._pred(s)),
                *self._after)

    def __getitem__(self, i):
        return self._names()[i]

    def __len__(self) -> int:
        return len(self._names())

    def __repr__(self) -> str:
        return repr(self._names())


SCORES: Sequence[str] = _Names()
NEEDS_GRADS: Sequence[str] = _Names(lambda s: s.needs_grads)
ACCUMULATES: Sequence[str] = _Names(lambda s: s.accumulate is not None)


def method_names(before: tuple[str, ...] = (), after: tuple[str, ...] = ()) -> Sequence[str]:
    """A live view of the score names between fixed ones (e.g. a config's method list).

    Example:
        >>> list(method_names(("none",), ("set",)))[:3]
        ['none', 'magnitude', 'random']
    """
    return _Names(before=before, after=after)


def register_score(name: str, *, needs_grads: bool = False, needs_key: bool = False,
                   accumulate: Callable[..., jax.Array] | None = None):
    """Register ``fn(w, g, key) -> scores`` as pruning score ``name``: the pruner,
    the experiment configs (``prune.method``) and the conformance suite pick it up.

    Example:
        >>> import jax.numpy as jnp
        >>> @register_score("square_doc_example")
        ... def _square(w, g, key):
        ...     return w * w
        >>> "square_doc_example" in SCORES
        True
        >>> score("square_doc_example", jnp.array([1., -3.])).tolist()
        [1.0, 9.0]
        >>> unregister_score("square_doc_example")
    """
    if not isinstance(name, str) or not name or name in ("none", "set", "rigl"):
        raise ConfigError(f"register_score: name {name!r} must be a non-empty string other "
                          f"than 'none', 'set' and 'rigl'")
    if name in _REGISTRY:
        raise ConfigError(f"register_score: {name!r} is already registered")

    def add(fn):
        _REGISTRY[name] = Score(name, fn, needs_grads, needs_key, accumulate)
        return fn

    return add


def unregister_score(name: str) -> None:
    """Remove a score registered with :func:`register_score`."""
    check_choice("score", name, SCORES)
    del _REGISTRY[name]


def get_score(name: str) -> Score:
    """The registry entry for ``name`` (a clear error listing the names otherwise)."""
    check_choice("prune.method (score)", name, SCORES)
    return _REGISTRY[name]


def score(name: str, w: jax.Array, g: jax.Array | None = None, *, key: Any = None,
          acc: jax.Array | None = None, path: str = "") -> jax.Array:
    """The score of every element of one leaf.

    Args:
      name: one of :data:`SCORES`.
      w: the weights.
      g: their gradient (scores that need one, unless an accumulator is given).
      key: a PRNG key (``random``).
      acc: the running accumulator for ``taylor``/``movement`` (see :func:`accumulate`).
      path: the parameter path, for error messages.
    """
    entry = get_score(name)
    w = jnp.asarray(w, jnp.float32)
    if acc is not None and entry.accumulate is not None:
        return acc
    if entry.needs_key and key is None:
        raise ConfigError(f"{name} pruning of {path or 'a leaf'}: needs key= (a PRNG key)")
    if entry.needs_grads:
        if g is None:
            raise ConfigError(f"{name} pruning of {path or 'a leaf'}: needs grads= (the "
                              f"gradient of the loss with respect to the params)")
        g = jnp.asarray(g, jnp.float32)
    return entry.fn(w, g, key)


def accumulate(name: str, acc: jax.Array, w: jax.Array, g: jax.Array,
               decay: float = 0.9) -> jax.Array:
    """One step of a score's accumulator (unchanged for scores without one)."""
    entry = get_score(name)
    if entry.accumulate is None:
        return acc
    return entry.accumulate(acc, jnp.asarray(w, jnp.float32), jnp.asarray(g, jnp.float32),
                            decay)


register_score("magnitude")(lambda w, g, key: jnp.abs(w))
register_score("random", needs_key=True)(
    lambda w, g, key: jax.random.uniform(key, w.shape, jnp.float32))
register_score("snip", needs_grads=True)(lambda w, g, key: jnp.abs(g * w))
register_score("taylor", needs_grads=True,
               accumulate=lambda acc, w, g, decay: decay * acc + (1.0 - decay) * jnp.abs(g * w)
               )(lambda w, g, key: jnp.abs(g * w))
register_score("movement", needs_grads=True,
               accumulate=lambda acc, w, g, decay: acc - w * g)(lambda w, g, key: -(w * g))


def snip_scores(loss_fn: Any, params: Any, *args: Any) -> Any:
    """``|∂L/∂w · w|`` for every leaf: SNIP's connection sensitivity on one batch.

    Args:
      loss_fn: ``loss_fn(params, *args) -> scalar``.
      params: the (initial) params.

    Example:
        >>> import jax.numpy as jnp
        >>> s = snip_scores(lambda p, x: jnp.sum(p["w"] * x), {"w": jnp.array([2., -3.])},
        ...                 jnp.array([1., 1.]))
        >>> s["w"].tolist()
        [2.0, 3.0]
    """
    grads = jax.grad(loss_fn)(params, *args)
    return jax.tree.map(lambda g, w: jnp.abs(g * w), grads, params)
