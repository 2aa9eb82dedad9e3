"""The compression transform: a NamedTuple of three pure functions.

Like ``optax.GradientTransformation``, a :class:`Transform` holds no data:

* ``init(params) -> state`` builds the compression state (a pytree of arrays);
* ``apply(params, state) -> params`` gives the params the forward pass should
  see (masked, fake-quantized, reconstructed from factors, ...);
* ``update(params, state, *, step, grads=None, key=None) -> state`` advances
  the state inside a jitted train step (mask updates, observers, ...).

Two optional fields let a transform skip work that training keeps true by itself:

* ``project(params, state) -> params``: the params a train state starts from
  (:func:`jaxcomp.train.create_state` and the training loops apply it; pruning sets
  pruned weights to ``0.0``);
* ``train_apply(params, state) -> params``: what the train step's forward pass sees
  when its optimizer keeps the projection after every update (pruning: the params
  themselves, as :func:`jaxcomp.prune.masked_updates` keeps pruned weights at exactly
  zero; no mask pass per step). Otherwise, or when ``None``: ``apply``
  (:func:`forward_fn` decides).

Example:
    >>> import jax.numpy as jnp
    >>> import jaxcomp as jc
    >>> t = jc.chain(jc.identity(), jc.identity())
    >>> params = {"w": jnp.ones((2, 2))}
    >>> state = t.init(params)
    >>> bool((t.apply(params, state)["w"] == 1).all())
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

PyTree = Any


class UpdateFn(Protocol):
    def __call__(
        self, params: PyTree, state: PyTree, *, step: Any, grads: PyTree | None = None,
        key: Any | None = None,
    ) -> PyTree: ...


class Transform(NamedTuple):
    """A compression transform: ``init``, ``apply``, ``update`` (all pure, jit-safe), and
    the optional ``train_apply`` and ``project`` (see the module docstring)."""

    init: Callable[[PyTree], PyTree]
    apply: Callable[[PyTree, PyTree], PyTree]
    update: UpdateFn
    train_apply: Callable[[PyTree, PyTree], PyTree] | None = None
    project: Callable[[PyTree, PyTree], PyTree] | None = None


def forward_fn(transform: Transform, tx: Any = None) -> Callable[[PyTree, PyTree], PyTree]:
    """What a train step's forward pass applies: ``transform.train_apply`` when the
    optimizer ``tx`` keeps the transform's projection after every update (its class says
    ``keeps_projection = True``, as :func:`jaxcomp.prune.masked_updates` does), else
    ``transform.apply``.

    Example:
        >>> import jax.numpy as jnp
        >>> t = stateless(lambda p: {k: 2 * v for k, v in p.items()})
        >>> float(forward_fn(t)({"w": jnp.ones(())}, t.init({}))["w"])
        2.0
    """
    fast = getattr(transform, "train_apply", None)
    if fast is not None and getattr(tx, "keeps_projection", False):
        return fast
    return transform.apply


def project(transform: Transform | None, params: PyTree, state: PyTree) -> PyTree:
    """``params`` as a train state starts from (``transform.project``; unchanged if none).

    Example:
        >>> import jax.numpy as jnp
        >>> project(identity(), {"w": jnp.ones(2)}, ())["w"].tolist()
        [1.0, 1.0]
    """
    fn = getattr(transform, "project", None)
    return params if fn is None else fn(params, state)


def _keep_state(params, state, *, step, grads=None, key=None):
    del params, step, grads, key
    return state


def stateless(apply: Callable[[PyTree], PyTree]) -> Transform:
    """A transform with empty state whose ``apply`` is ``apply(params)``.

    Example:
        >>> import jax.numpy as jnp
        >>> t = stateless(lambda p: {k: 2 * v for k, v in p.items()})
        >>> float(t.apply({"w": jnp.ones(())}, t.init({}))["w"])
        2.0
    """
    return Transform(lambda params: (), lambda params, state: apply(params), _keep_state)


def identity() -> Transform:
    """The transform that changes nothing (useful as a baseline and in tests)."""
    return Transform(lambda params: (), lambda params, state: params, _keep_state)


def _split_key(key, n):
    if key is None:
        return [None] * n
    import jax

    return list(jax.random.split(key, n))


def chain(*transforms: Transform) -> Transform:
    """Compose transforms left to right; the state is a tuple of their states.

    ``apply`` feeds each transform the previous one's output; ``update`` gives
    transform *i* the params as transforms ``0..i-1`` left them, so a
    quantizer's observer sees pruned weights. The key, when given, is split.
    """
    return named_chain(*((str(i), t) for i, t in enumerate(transforms)), _as_tuple=True)


def _is_transform(t: Any) -> bool:
    return all(callable(getattr(t, f, None)) for f in ("init", "apply", "update"))


def _state_error(what: str, state: Any, expected: str) -> Exception:
    from jaxcomp.core.errors import ConfigError
    from jaxcomp.core.guards import describe_state

    return ConfigError(f"{what}: got {describe_state(state)} as state; expected {expected} "
                       "as returned by this chain's init")


def named_chain(*named: tuple[str, Transform], _as_tuple: bool = False) -> Transform:
    """Like :func:`chain`, but the state is a dict keyed by the given names.

    Example:
        >>> import jax.numpy as jnp
        >>> t = named_chain(("a", identity()), ("b", identity()))
        >>> sorted(t.init({"w": jnp.ones(2)}))
        ['a', 'b']
    """
    from jaxcomp.core.errors import ConfigError

    for i, t in enumerate(named):
        if not (isinstance(t, tuple) and len(t) == 2 and _is_transform(t[1])):
            what = f"chain: argument {i}" if _as_tuple else f"named_chain: argument {i}"
            got = t[1] if _as_tuple and isinstance(t, tuple) and len(t) == 2 else t
            raise ConfigError(f"{what} is a {type(got).__name__} ({got!r:.60}); expected a "
                              "jaxcomp Transform (init, apply, update)")
    names = [n for n, _ in named]
    if len(set(names)) != len(names):
        raise ConfigError(f"named_chain: duplicate names {names}; expected unique names")
    ts = [t for _, t in named]

    def pack(states):
        return tuple(states) if _as_tuple else dict(zip(names, states, strict=True))

    def unpack(state):
        return list(state) if _as_tuple else [state[n] for n in names]

    def init(params):
        from jaxcomp.core.guards import require_leaves

        require_leaves("chain.init", params)
        states = []
        for t in ts:
            states.append(t.init(params))
            params = t.apply(params, states[-1])
        return pack(states)

    def check(what, state):
        if _as_tuple and not (isinstance(state, tuple | list) and len(state) == len(ts)):
            raise _state_error(what, state, f"a tuple of {len(ts)} states")
        if not _as_tuple and not (isinstance(state, dict) and set(state) == set(names)):
            raise _state_error(what, state, f"a dict with keys {names}")

    def apply(params, state):
        check("chain.apply", state)
        for t, s in zip(ts, unpack(state), strict=True):
            params = t.apply(params, s)
        return params

    def update(params, state, *, step, grads=None, key=None):
        check("chain.update", state)
        new = []
        for t, s, k in zip(ts, unpack(state), _split_key(key, len(ts)), strict=True):
            s = t.update(params, s, step=step, grads=grads, key=k)
            new.append(s)
            params = t.apply(params, s)
        return pack(new)

    # only the first transform sees the raw params, so only its projection holds in a
    # train state (a later one's input is the earlier ones' output, e.g. reconstructed)
    first = ts[0] if ts else None
    if getattr(first, "project", None) is None:
        return Transform(init, apply, update)

    def train_apply(params, state):
        check("chain.apply", state)
        states = unpack(state)
        params = (first.train_apply or first.apply)(params, states[0])
        for t, s in zip(ts[1:], states[1:], strict=True):
            params = t.apply(params, s)
        return params

    def project_first(params, state):
        check("chain.project", state)
        return first.project(params, unpack(state)[0])

    return Transform(init, apply, update, train_apply, project_first)
