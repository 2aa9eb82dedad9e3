"""Core: the Transform abstraction, tree paths, selection rules and schedules.

The submodules that need JAX (``paths``, ``schedules``, ``select``) are imported
on first use, so ``from jaxcomp.core import ConfigError`` (the CLI's start-up
path) does not pull JAX in.

Example:
    >>> from jaxcomp.core import ConfigError, chain, identity
    >>> isinstance(chain(identity()), tuple), issubclass(ConfigError, ValueError)
    (True, True)
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

from jaxcomp.core.errors import ConfigError

# public name -> (module, attribute or None for the module itself)
_LAZY = {
    "paths": ("jaxcomp.core.paths", None),
    "schedules": ("jaxcomp.core.schedules", None),
    "resolve_rules": ("jaxcomp.core.select", "resolve_rules"),
    "select": ("jaxcomp.core.select", "select"),
    "selected_paths": ("jaxcomp.core.select", "selected_paths"),
    "Transform": ("jaxcomp.core.transform", "Transform"),
    "CheckedValueError": ("jaxcomp.core.checked", "CheckedValueError"),
    "checked": ("jaxcomp.core.checked", "checked"),
    "guards": ("jaxcomp.core.guards", None),
    "chain": ("jaxcomp.core.transform", "chain"),
    "identity": ("jaxcomp.core.transform", "identity"),
    "named_chain": ("jaxcomp.core.transform", "named_chain"),
    "stateless": ("jaxcomp.core.transform", "stateless"),
}


def __getattr__(name: str) -> Any:
    """Import the submodule behind a public name on first use."""
    if name not in _LAZY:
        raise AttributeError(f"module 'jaxcomp.core' has no attribute {name!r}")
    module, attr = _LAZY[name]
    value = importlib.import_module(module)
    if attr is not None:
        value = getattr(value, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


class _CoreModule(types.ModuleType):
    """Keeps ``jaxcomp.core.select`` and ``jaxcomp.core.checked`` the functions: importing
    the submodule of the same name would otherwise bind the module over it."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("select", "checked") and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _CoreModule


__all__ = [
    "CheckedValueError",
    "ConfigError",
    "checked",
    "guards",
    "Transform",
    "chain",
    "identity",
    "named_chain",
    "paths",
    "resolve_rules",
    "schedules",
    "select",
    "selected_paths",
    "stateless",
]
