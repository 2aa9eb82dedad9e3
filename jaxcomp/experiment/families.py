"""The registry of compression families that an experiment config can switch on.

A family module (``jaxcomp/<family>/family.py``) defines:

* its config section — ``default_config()`` with a ``method`` key (``"none"`` =
  off), ``validate(cfg)``, ``VECTOR_KEYS`` — taken from a JAX-free module of
  :mod:`jaxcomp.experiment.sections`;
* ``plan(cfg, ctx) -> Plan`` — before training: what the family adds to the run
  (transform, optimizer wrapper, loss and loss state, cached per-example arrays,
  replacement model) and its post-training step (post-training quantization,
  surgery, fine-tuning, export; metrics into ``ctx.metrics``, ledger rows into
  ``ctx.ledger``); see :mod:`jaxcomp.experiment.plan`. A module with the older
  ``setup(cfg, ctx)`` / ``after_train(cfg, ctx)`` pair still works.

Families run in the order of :data:`FAMILY_MODULES`.

Example:
    >>> from jaxcomp.experiment import families
    >>> isinstance(families.available(), dict)
    True
"""

from __future__ import annotations

import importlib
from types import ModuleType

FAMILY_MODULES = {
    "decompose": "jaxcomp.decompose.family",
    "prune": "jaxcomp.prune.family",
    "quant": "jaxcomp.quant.family",
    "distill": "jaxcomp.distill.family",
}


def available() -> dict[str, ModuleType]:
    """The family modules that exist in this installation, in run order."""
    out = {}
    for name, module in FAMILY_MODULES.items():
        try:
            out[name] = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
    return out


def sections() -> dict[str, ModuleType]:
    """Each family's config section module — ``default_config``, ``validate``,
    ``METHODS`` or ``methods()`` — in run order, without importing JAX: the
    :mod:`jaxcomp.experiment.sections` modules, or the family modules themselves
    when :func:`available` was replaced (a family defined at run time).

    Example:
        >>> list(sections())
        ['decompose', 'prune', 'quant', 'distill']
        >>> sections()["quant"].METHODS
        ('none', 'ptq', 'qat', 'adaround')
    """
    if available is not _BUILTIN_AVAILABLE:
        return available()
    from jaxcomp.experiment.sections import SECTIONS

    return {n: importlib.import_module(m) for n, m in SECTIONS.items()}


def section_methods(section: ModuleType) -> tuple[str, ...]:
    """The ``method`` values a family's section allows."""
    fn = getattr(section, "methods", None)
    return tuple(fn()) if callable(fn) else tuple(getattr(section, "METHODS", ()))


def active(cfg) -> dict[str, ModuleType]:
    """The families switched on in ``cfg`` (``method != "none"``), in run order.

    Example:
        >>> from jaxcomp.experiment import base_config
        >>> cfg = base_config(); cfg.prune.method = "magnitude"
        >>> list(active(cfg))
        ['prune']
    """
    return {n: f for n, f in available().items()
            if n in cfg and cfg[n].get("method", "none") != "none"}


_BUILTIN_AVAILABLE = available
