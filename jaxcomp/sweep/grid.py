"""Sweep grids: products and zips of value lists over dotted config keys.

A sweep spec is built from three helpers and expands to a list of settings
(``{key: value}`` dicts) in a fixed order:

* :func:`axis` — one key and its list of values;
* :func:`product` — every combination of its parts (the last part varies fastest);
* :func:`zip_` — its parts side by side (they must have the same length).

A plain dict ``{key: values, ...}`` is accepted wherever a part is: inside
:func:`product` it is the product of its keys, inside :func:`zip_` the zip.

:func:`expand` checks the spec against a config before anything runs: unknown
keys (with the nearest key suggested), values of the wrong type, an empty grid.

Example:
    >>> from jaxcomp.sweep.grid import axis, product, zip_
    >>> spec = product(zip_({"a": [1, 2], "b": ["x", "y"]}), axis("seed", [0, 1]))
    >>> [tuple(s.values()) for s in spec.settings()]
    [(1, 'x', 0), (1, 'x', 1), (2, 'y', 0), (2, 'y', 1)]
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections

from jaxcomp.core.errors import ConfigError

Setting = dict[str, Any]


class Spec:
    """A sweep spec: an ordered list of settings over a fixed set of keys."""

    def __init__(self, kind: str, parts: Sequence[Spec] = (), key: str = "",
                 values: Sequence[Any] = ()):
        self.kind, self.parts, self.key, self.values = kind, list(parts), key, list(values)

    def keys(self) -> list[str]:
        """The swept keys, in order of first appearance."""
        if self.kind == "axis":
            return [self.key]
        out: list[str] = []
        for p in self.parts:
            out += [k for k in p.keys() if k not in out]
        return out

    def settings(self) -> list[Setting]:
        """The expanded list of ``{key: value}`` settings."""
        if self.kind == "axis":
            return [{self.key: v} for v in self.values]
        lists = [p.settings() for p in self.parts]
        if self.kind == "zip":
            combos = zip(*lists, strict=True)
        else:
            combos = itertools.product(*lists)
        out = []
        for combo in combos:
            merged: Setting = {}
            for d in combo:
                merged.update(d)
            out.append(merged)
        return out

    def __len__(self) -> int:
        return len(self.settings())

    def to_json(self) -> Any:
        """A JSON-able description (used in the sweep manifest)."""
        if self.kind == "axis":
            return {self.key: self.values}
        return {self.kind: [p.to_json() for p in self.parts]}

    def __repr__(self) -> str:
        return f"Spec({json.dumps(self.to_json(), default=repr)})"


def axis(key: str, values: Sequence[Any]) -> Spec:
    """One swept key and its values.

    Example:
        >>> axis("train.epochs", [1, 2]).settings()
        [{'train.epochs': 1}, {'train.epochs': 2}]
    """
    if not isinstance(key, str) or not key:
        raise ConfigError(f"sweep: a key must be a non-empty string, got {key!r}")
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        raise ConfigError(f"sweep key {key!r}: values must be a list, got {values!r}")
    return Spec("axis", key=key, values=values)


def _as_parts(parts: Sequence[Any], inner: str) -> list[Spec]:
    out = []
    for p in parts:
        if isinstance(p, Spec):
            out.append(p)
        elif isinstance(p, Mapping):
            axes = [axis(k, v) for k, v in p.items()]
            out.append(axes[0] if len(axes) == 1 else
                       (zip_(*axes) if inner == "zip" else product(*axes)))
        else:
            raise ConfigError(f"sweep: expected axis(...), product(...), zip_(...) or a dict "
                              f"of key -> list, got {p!r}")
    return out


def _check_disjoint(parts: list[Spec]) -> None:
    seen: set[str] = set()
    for p in parts:
        dup = seen & set(p.keys())
        if dup:
            raise ConfigError(f"sweep: key {sorted(dup)[0]!r} is swept twice")
        seen |= set(p.keys())


def product(*parts: Spec | Mapping[str, Sequence[Any]]) -> Spec:
    """Every combination of the parts (the last part varies fastest).

    Example:
        >>> len(product({"a": [1, 2, 3]}, {"b": [0, 1]}))
        6
    """
    specs = _as_parts(parts, "product")
    _check_disjoint(specs)
    return Spec("product", specs)


def zip_(*parts: Spec | Mapping[str, Sequence[Any]]) -> Spec:
    """The parts side by side; they must all have the same length.

    Example:
        >>> zip_({"a": [1, 2]}, {"b": [3, 4]}).settings()
        [{'a': 1, 'b': 3}, {'a': 2, 'b': 4}]
    """
    specs = _as_parts(parts, "zip")
    _check_disjoint(specs)
    lengths = {tuple(p.keys()): len(p) for p in specs}
    if len(set(lengths.values())) > 1:
        desc = ", ".join(f"{'/'.join(k)}: {n}" for k, n in lengths.items())
        raise ConfigError(f"sweep zip_: lists of different lengths ({desc}); zip needs equal "
                          f"lengths (use product for all combinations)")
    return Spec("zip", specs)


def from_overrides(items: Sequence[str]) -> Spec | None:
    """Axes from CLI ``--grid key=[v1,v2]`` strings (their product), or ``None``.

    Example:
        >>> from_overrides(["seed=[0,1]", "train.epochs=[1]"]).settings()
        [{'seed': 0, 'train.epochs': 1}, {'seed': 1, 'train.epochs': 1}]
    """
    from jaxcomp.experiment.config import parse_value

    axes = []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--grid {item!r}: expected key=[v1, v2, ...]")
        key, text = item.split("=", 1)
        values = parse_value(text.strip())
        if not isinstance(values, list | tuple):
            values = [values]
        axes.append(axis(key.strip(), list(values)))
    return product(*axes) if axes else None


def apply_setting(cfg: ml_collections.ConfigDict, setting: Setting
                  ) -> ml_collections.ConfigDict:
    """A copy of ``cfg`` with the setting's values set (type-checked, locked)."""
    from jaxcomp.experiment.config import set_key

    out = copy.deepcopy(cfg)
    for key, value in setting.items():
        try:
            set_key(out, key, value)
        except ConfigError as e:
            raise ConfigError(f"sweep: {e}") from None
    out.lock()
    return out


def expand(cfg: ml_collections.ConfigDict, spec: Spec | None
           ) -> list[tuple[Setting, ml_collections.ConfigDict]]:
    """Check ``spec`` against ``cfg`` and return ``[(setting, config), ...]``.

    No spec means one run of ``cfg`` itself.

    Raises:
      ConfigError: an unknown key (nearest key suggested), a value of the wrong
        type, or an empty grid.

    Example:
        >>> from jaxcomp.experiment import base_config
        >>> runs = expand(base_config(), product({"seed": [0, 1]}))
        >>> [c.seed for _, c in runs]
        [0, 1]
    """
    from jaxcomp.experiment.config import get_key
    from jaxcomp.experiment.validate import check_keys_take_effect

    if spec is None:
        return [({}, cfg)]
    for key in spec.keys():
        try:
            get_key(cfg, key)
        except ConfigError as e:
            raise ConfigError(f"sweep: {e}") from None
    settings = spec.settings()
    if not settings:
        empty = [k for k in spec.keys() if not _axis_values(spec, k)]
        raise ConfigError(f"sweep: the grid is empty (no values for {', '.join(empty) or 'it'})")
    pairs = [(s, apply_setting(cfg, s)) for s in settings]
    check_keys_take_effect(spec.keys(), [c for _, c in pairs])
    return pairs


def _axis_values(spec: Spec, key: str) -> list[Any]:
    if spec.kind == "axis":
        return spec.values if spec.key == key else [None]
    for p in spec.parts:
        if key in p.keys():
            return _axis_values(p, key)
    return []


def load_sweep(path: str) -> Spec | None:
    """The ``get_sweep()`` spec of a config file, or ``None`` if it defines none."""
    from jaxcomp.experiment.config import load_config_module

    fn = getattr(load_config_module(path), "get_sweep", None)
    if fn is None:
        return None
    out = fn()
    if isinstance(out, Mapping):
        out = product(out)
    if not isinstance(out, Spec):
        raise ConfigError(f"{path}: get_sweep() must return a spec from jaxcomp.sweep.grid "
                          f"(product / zip_ / axis) or a dict, got {type(out).__name__}")
    return out


def config_hash(obj: Any) -> str:
    """A stable short hash of a JSON-able object (e.g. ``cfg.to_dict()``).

    Example:
        >>> config_hash({"a": 1, "b": [2]}) == config_hash({"b": [2], "a": 1})
        True
    """
    text = json.dumps(obj, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
