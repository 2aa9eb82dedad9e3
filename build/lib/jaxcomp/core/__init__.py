"""Core: the Transform abstraction, tree paths, selection rules and schedules."""

from jaxcomp.core import paths, schedules
from jaxcomp.core.errors import ConfigError
from jaxcomp.core.select import resolve_rules, select, selected_paths
from jaxcomp.core.transform import Transform, chain, identity, named_chain, stateless

__all__ = [
    "ConfigError",
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
