"""Experiment configs: plain Python files with ``get_config()`` returning a
locked ``ml_collections.ConfigDict``; ``--set key=value`` overrides with type checks.

Example:
    >>> from jaxcomp.experiment.config import base_config, apply_overrides
    >>> cfg = base_config()
    >>> apply_overrides(cfg, ["train.epochs=2", "model.name=lenet5"])
    >>> cfg.train.epochs, cfg.model.name
    (2, 'lenet5')
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pathlib
from collections.abc import Callable, Iterable
from typing import Any

import ml_collections

from jaxcomp.core.errors import ConfigError, check_choice, check_range, suggest
from jaxcomp.distributed.mesh import mesh_config
from jaxcomp.experiment import families

OPTIMIZERS = ("adam", "adamw", "sgd", "momentum")  # the optimizers train.optimizer names
_PACKAGE_DIR = pathlib.Path(__file__).resolve().parent.parent


def base_config() -> ml_collections.ConfigDict:
    """The defaults every experiment config starts from (locked)."""
    c = ml_collections.ConfigDict()
    c.name = "experiment"
    c.seed = 0
    c.data = ml_collections.ConfigDict(
        {"name": "fashion_mnist", "data_dir": "", "val_fraction": 0.0, "limit_train": 0,
         "limit_test": 0})
    c.model = ml_collections.ConfigDict({"name": "lenet300"})
    c.train = ml_collections.ConfigDict(
        {"epochs": 10, "batch_size": 128, "optimizer": "adam", "learning_rate": 1e-3,
         "weight_decay": 0.0, "momentum": 0.9, "scan": "auto", "eval_batch_size": 1000,
         "checkpoint": False})
    c.mesh = mesh_config()
    for name, default_config in family_defaults().items():
        c[name] = default_config()
    c.lock()
    return c


def family_defaults() -> dict[str, Callable[[], ml_collections.ConfigDict]]:
    """Each family's ``default_config`` function, in run order, from its config
    section (:mod:`jaxcomp.experiment.sections`: no JAX is imported).

    Example:
        >>> sorted(family_defaults())
        ['decompose', 'distill', 'prune', 'quant']
        >>> family_defaults()["prune"]().method
        'none'
    """
    return {n: sec.default_config for n, sec in families.sections().items()}


_MODULES: dict[tuple[str, int, int], Any] = {}


def load_config_module(path: str) -> Any:
    """Execute a config file once and return it as a module; later calls for the same
    unchanged file (``get_config`` and ``get_sweep`` alike) reuse it.

    Raises:
      ConfigError: the file does not exist or fails to execute.
    """
    p = pathlib.Path(path)
    if not p.is_file():
        near = suggest(p.name, [f.name for f in p.parent.glob("*.py")]) if p.parent.is_dir() \
            else ""
        raise ConfigError(f"config file {path!r} does not exist{near}")
    st = p.stat()
    key = (str(p.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _MODULES:
        spec = importlib.util.spec_from_file_location(f"jaxcomp_config_{p.stem}", p)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except ConfigError:
            raise
        except Exception as e:
            raise ConfigError(f"config file {path!r} failed to load: {type(e).__name__}: "
                              f"{e}") from None
        _MODULES[key] = module
    return _MODULES[key]


def load_config(path: str) -> ml_collections.ConfigDict:
    """Import a config file and call its ``get_config()``; the result is locked."""
    module = load_config_module(path)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config file {path!r} has no get_config() function")
    try:
        cfg = module.get_config()
    except (AttributeError, KeyError) as e:
        raise ConfigError(f"config file {path!r}: {_clean(e)}") from None
    cfg.lock()
    return cfg


def _clean(e: BaseException) -> str:
    msg = str(e.args[0]) if e.args else str(e)
    return msg.strip("'\"")


def parse_value(text: str) -> Any:
    """A ``--set`` value: a Python literal if it parses as one, else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _all_keys(cfg: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    keys = []
    for k, v in cfg.items():
        full = f"{prefix}{k}"
        keys.append(full)
        if isinstance(v, ml_collections.ConfigDict):
            keys += _all_keys(v, full + ".")
    return keys


def get_key(cfg: ml_collections.ConfigDict, key: str) -> Any:
    """The value at a dotted key; ConfigError with a suggestion if it does not exist."""
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            raise ConfigError(f"unknown config key {key!r}{suggest(key, _all_keys(cfg))}")
        node = node[part]
    return node


def set_key(cfg: ml_collections.ConfigDict, key: str, value: Any) -> None:
    """Set a dotted key, keeping its type (ints widen to floats); clear errors otherwise."""
    old = get_key(cfg, key)
    *parents, last = key.split(".")
    node = cfg
    for part in parents:
        node = node[part]
    if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(old, tuple) and isinstance(value, list):
        value = tuple(value)
    if old is not None and not isinstance(old, ml_collections.ConfigDict) and \
            not _same_kind(old, value):
        raise ConfigError(f"{key}: got {value!r} ({type(value).__name__}); expected a "
                          f"{type(old).__name__} like the default {old!r}")
    try:
        node[last] = value
    except (TypeError, KeyError, AttributeError) as e:
        raise ConfigError(f"{key}: cannot set {value!r}: {_clean(e)}") from None


def _same_kind(old: Any, new: Any) -> bool:
    if isinstance(old, bool) or isinstance(new, bool):
        return isinstance(old, bool) and isinstance(new, bool)
    if isinstance(old, int | float) and isinstance(new, int | float):
        return not (isinstance(old, int) and isinstance(new, float))
    if isinstance(old, tuple | list) and isinstance(new, tuple | list):
        return True
    return isinstance(new, type(old))


def apply_overrides(cfg: ml_collections.ConfigDict, overrides: Iterable[str]) -> None:
    """Apply ``key=value`` strings (the CLI's ``--set``) to ``cfg`` in place."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, text = item.split("=", 1)
        set_key(cfg, key.strip(), parse_value(text.strip()))


def check_values(cfg: ml_collections.ConfigDict) -> None:
    """Range and choice checks of the ``train`` and ``data`` keys that need no JAX.

    The CLI runs them right after ``--set``, so the common bad values fail in a
    fraction of a second; :func:`jaxcomp.experiment.validate.validate_config` runs
    them again, with ``model.name`` and every family's keys, before any work.

    Example:
        >>> cfg = base_config()
        >>> cfg.train.learning_rate = -1.0
        >>> check_values(cfg)
        Traceback (most recent call last):
        jaxcomp.core.errors.ConfigError: train.learning_rate: got -1.0; allowed range (0, inf]
    """
    from jaxcomp.data import DATASETS

    t = cfg.train
    check_range("train.epochs", t.epochs, 0, None)
    check_range("train.batch_size", t.batch_size, 1, None)
    check_choice("train.optimizer", t.optimizer, OPTIMIZERS)
    check_range("train.learning_rate", t.learning_rate, 0.0, None, lo_open=True)
    check_range("train.weight_decay", t.weight_decay, 0.0, None)
    check_choice("train.scan", t.scan, ("auto", "on", "off"))
    check_choice("data.name", cfg.data.name, DATASETS)
    check_range("data.limit_train", cfg.data.limit_train, 0, None)
    check_range("data.limit_test", cfg.data.limit_test, 0, None)
