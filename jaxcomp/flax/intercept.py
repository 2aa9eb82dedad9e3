"""Intercept module calls by path — the hook behind activation quantization and
feature capture, for both linen and NNX.

A *hook* is ``hook(path, module, args, kwargs, call_next) -> output``; it may
change the inputs, call ``call_next(*args, **kwargs)``, and change or record the
output. Modules are chosen by the same ordered regex rules as ``where=``
(first full match wins, ``!pattern`` excludes); after the call, a rule that
matched no module is an error naming the rule and the module paths seen.

Example (linen, record the output of every Dense layer):
    >>> import jax, jax.numpy as jnp
    >>> import flax.linen as nn
    >>> from jaxcomp.flax.intercept import intercept_linen
    >>> class MLP(nn.Module):
    ...     @nn.compact
    ...     def __call__(self, x):
    ...         h = nn.relu(nn.Dense(4)(x))
    ...         return nn.Dense(2)(h)
    >>> m = MLP(); v = m.init(jax.random.key(0), jnp.ones((1, 3)))
    >>> seen = {}
    >>> def record(path, module, args, kwargs, call_next):
    ...     out = call_next(*args, **kwargs); seen[path] = out.shape; return out
    >>> with intercept_linen(["Dense_.*"], record):
    ...     _ = m.apply(v, jnp.ones((5, 3)))
    >>> seen
    {'Dense_0': (5, 4), 'Dense_1': (5, 2)}
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import flax.linen as nn

from jaxcomp.core.errors import ConfigError, nearest
from jaxcomp.core.select import _normalize_rules

Hook = Callable[[str, Any, tuple, dict, Callable[..., Any]], Any]


class _Matcher:
    def __init__(self, rules: str | Sequence[Any], what: str):
        self.rules = [(re.compile(p), p, v) for p, v in _normalize_rules(rules)]
        self.what = what
        self.seen: list[str] = []
        self.matched: set[str] = set()

    def value(self, path: str) -> Any:
        if path not in self.seen:
            self.seen.append(path)
        for rx, pattern, v in self.rules:
            if rx.fullmatch(path):
                self.matched.add(pattern)
                return v
        return None

    def check(self) -> None:
        for rx, pattern, _ in self.rules:
            if pattern not in self.matched and not any(rx.fullmatch(p) for p in self.seen):
                raise ConfigError(
                    f"{self.what}: rule {pattern!r} matches no module; nearest module "
                    f"paths: {nearest(pattern, self.seen, n=5)}"
                )


def _linen_path(module: nn.Module) -> str:
    return "/".join(str(p) for p in getattr(module, "path", ()) or ())


@contextlib.contextmanager
def intercept_linen(
    rules: str | Sequence[Any], hook: Hook, *, what: str = "intercept rules",
    check: bool = True,
) -> Iterator[_Matcher]:
    """Call ``hook`` around every linen ``__call__`` whose module path matches ``rules``.

    The hook's rule value is not passed; use :func:`rule_value` on the yielded
    matcher if per-rule values (e.g. bits) are needed. The root module (empty
    path) is never intercepted. ``check=False`` skips the matched-nothing check.
    """
    matcher = _Matcher(rules, what)

    def interceptor(next_fun, args, kwargs, context):
        if context.method_name != "__call__":
            return next_fun(*args, **kwargs)
        path = _linen_path(context.module)
        if not path or not matcher.value(path):
            return next_fun(*args, **kwargs)
        return hook(path, context.module, args, kwargs, next_fun)

    with nn.intercept_methods(interceptor):
        yield matcher
    if check:
        matcher.check()


def rule_value(matcher: _Matcher, path: str) -> Any:
    """The value of the first rule matching ``path`` (``None`` if none)."""
    for rx, _, v in matcher.rules:
        if rx.fullmatch(path):
            return v
    return None


def _nnx_modules(root: Any) -> list[tuple[str, Any]]:
    from flax import nnx

    out = []
    for path, module in nnx.iter_modules(root):
        if path:
            out.append(("/".join(str(p) for p in path), module))
    return out


class _Stack(threading.local):
    def __init__(self):
        self.entries: list[tuple[_Matcher, Hook]] = []


_NNX_ACTIVE = _Stack()  # (matcher, hook) of the open intercept() contexts, outermost first


@contextlib.contextmanager
def _swap(root: Any, entries: Sequence[tuple[_Matcher, Hook]]) -> Iterator[None]:
    """Route the ``__call__`` of each matched submodule of ``root`` through the hooks
    of ``entries`` (outermost first, as linen runs its interceptors)."""
    swapped: list[tuple[Any, type]] = []
    for path, module in _nnx_modules(root) if entries else ():
        hooks = [h for m, h in entries if m.value(path)]
        if not hooks:
            continue
        cls = type(module)

        def make_call(path=path, cls=cls, hooks=tuple(hooks)):
            def __call__(self, *args, **kwargs):
                def run(i, *a, **k):
                    if i == len(hooks):
                        return cls.__call__(self, *a, **k)
                    return hooks[i](path, self, a, k, lambda *a2, **k2: run(i + 1, *a2, **k2))
                return run(0, *args, **kwargs)
            return __call__

        sub = type(cls.__name__, (cls,), {"__call__": make_call()})
        object.__setattr__(module, "__class__", sub)
        swapped.append((module, cls))
    try:
        yield
    finally:
        for module, cls in reversed(swapped):
            object.__setattr__(module, "__class__", cls)


def nnx_interception(root: Any) -> contextlib.AbstractContextManager[None]:
    """Apply the open :func:`intercept` contexts to the NNX module ``root`` while it runs.

    Whoever merges an NNX module and calls it (:func:`jaxcomp.flax.from_nnx`'s
    ``apply``) wraps the call in this context, so that ``intercept`` sees NNX
    submodules by their state paths (``block0/conv1``) as it sees linen modules.
    Outside any ``intercept`` context it does nothing.
    """
    return _swap(root, list(_NNX_ACTIVE.entries))


@contextlib.contextmanager
def intercept(
    rules: str | Sequence[Any], hook: Hook, *, what: str = "intercept rules",
    check: bool = True,
) -> Iterator[_Matcher]:
    """Call ``hook`` around every module call matched by ``rules``, linen or NNX.

    Linen modules are intercepted by method interception; NNX modules when a
    model merged by :func:`jaxcomp.flax.from_nnx` runs inside the context (see
    :func:`nnx_interception`). Nested contexts run outermost first. The root
    module is never intercepted; ``check=False`` skips the matched-nothing check.

    Example (the same hook on an NNX model):
        >>> import jax, jax.numpy as jnp
        >>> from flax import nnx
        >>> from jaxcomp.flax import from_nnx
        >>> class Net(nnx.Module):
        ...     def __init__(self, rngs):
        ...         self.a = nnx.Linear(3, 4, rngs=rngs); self.b = nnx.Linear(4, 2, rngs=rngs)
        ...     def __call__(self, x):
        ...         return self.b(self.a(x))
        >>> model = from_nnx(Net)
        >>> params, ms = model.init(jax.random.key(0), None)
        >>> seen = {}
        >>> def record(path, module, args, kwargs, call_next):
        ...     out = call_next(*args, **kwargs); seen[path] = out.shape; return out
        >>> with intercept([".*"], record):
        ...     _ = model.apply(params, ms, jnp.ones((5, 3)))
        >>> seen
        {'a': (5, 4), 'b': (5, 2)}
    """
    with intercept_linen(rules, hook, what=what, check=False) as matcher:
        _NNX_ACTIVE.entries.append((matcher, hook))
        try:
            yield matcher
        finally:
            _NNX_ACTIVE.entries.remove((matcher, hook))
    if check:
        matcher.check()


@contextlib.contextmanager
def intercept_nnx(
    root: Any, rules: str | Sequence[Any], hook: Hook, *, what: str = "intercept rules",
    check: bool = True,
) -> Iterator[_Matcher]:
    """Call ``hook`` around the ``__call__`` of every NNX submodule of ``root``
    whose path matches ``rules``.

    NNX has no method interceptor, so each matched instance gets, for the
    duration of the context, a subclass of its own class whose ``__call__``
    goes through the hook; the original class is restored on exit.

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> class Net(nnx.Module):
        ...     def __init__(self, rngs):
        ...         self.a = nnx.Linear(3, 4, rngs=rngs); self.b = nnx.Linear(4, 2, rngs=rngs)
        ...     def __call__(self, x):
        ...         return self.b(self.a(x))
        >>> net = Net(nnx.Rngs(0)); seen = []
        >>> def hook(path, m, args, kw, call_next):
        ...     seen.append(path); return call_next(*args, **kw)
        >>> with intercept_nnx(net, ["a"], hook):
        ...     _ = net(jnp.ones((1, 3)))
        >>> seen
        ['a']
    """
    matcher = _Matcher(rules, what)
    with _swap(root, [(matcher, hook)]):
        yield matcher
    if check:
        matcher.check()
