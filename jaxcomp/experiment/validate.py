"""Every key of an experiment config checked before any work starts.

Each compression family has one ``validate(cfg.<family>)``. All of them run on
every config, switched on or off: a bad value on a family that is off is still
an error (it would otherwise be carried into records and reports), and its
message says the family is off and how to switch it on. Keys swept or set
on a family that is off in every setting are an error too: they change nothing.

Example:
    >>> from jaxcomp.experiment import base_config
    >>> from jaxcomp.experiment.validate import validate_config
    >>> cfg = base_config(); cfg.quant.bits = 9
    >>> try:
    ...     validate_config(cfg)
    ... except Exception as e:
    ...     print(str(e).split(";")[0])
    quant.bits: got 9
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import ml_collections

from jaxcomp.core.errors import ConfigError, check_choice
from jaxcomp.experiment.config import OPTIMIZERS, check_values


def _switch_on_hint(name: str, section: Any) -> str:
    from jaxcomp.experiment.families import section_methods

    methods = [m for m in section_methods(section) if m != "none"] if section else []
    choice = "|".join(methods) if methods else f"a method of jaxcomp.{name}"
    return (f"the {name} family is off ({name}.method='none'); switch it on with "
            f"--set {name}.method=<{choice}>")


def family_method(cfg: ml_collections.ConfigDict, name: str) -> str:
    """The family's ``method`` (``"none"`` when the section is absent)."""
    return cfg[name].get("method", "none") if name in cfg else "none"


def validate_base(cfg: ml_collections.ConfigDict) -> None:
    """The keys every run has: train, data (:func:`~jaxcomp.experiment.config.check_values`)
    and model."""
    from jaxcomp.experiment.sections import MODEL_NAMES

    check_values(cfg)
    check_choice("model.name", cfg.model.name, MODEL_NAMES)


def validate_config(cfg: ml_collections.ConfigDict) -> None:
    """Check the base keys and every family's keys, on or off.

    Raises:
      ConfigError: naming the key, the value and what is allowed; for a family
        that is off, also how to switch it on.
    """
    from jaxcomp.experiment import families

    validate_base(cfg)
    for name, section in families.sections().items():
        if name not in cfg:
            continue
        try:
            section.validate(cfg[name])
        except ConfigError as e:
            if family_method(cfg, name) != "none":
                raise
            raise ConfigError(f"{e} ({_switch_on_hint(name, section)})") from None


def check_keys_take_effect(keys: Iterable[str],
                           configs: Sequence[ml_collections.ConfigDict]) -> None:
    """``keys`` (from ``--set`` or a sweep grid) must belong to a family that is on in at
    least one of ``configs``: a key of a family that is off everywhere changes nothing,
    and a sweep over it would only repeat the same run. No family module is imported
    (nor JAX): the error lists the family's methods from its config section.

    Example:
        >>> from jaxcomp.experiment import base_config
        >>> check_keys_take_effect(["seed", "train.epochs"], [base_config()])
    """
    from jaxcomp.experiment import families

    for key in keys:
        name, _, leaf = key.partition(".")
        if name not in families.FAMILY_MODULES or leaf in ("", "method"):
            continue
        if all(family_method(c, name) == "none" for c in configs):
            section = families.sections().get(name)
            raise ConfigError(f"{key}: has no effect because {_switch_on_hint(name, section)}")


__all__ = ["OPTIMIZERS", "check_keys_take_effect", "family_method", "validate_base",
           "validate_config"]
