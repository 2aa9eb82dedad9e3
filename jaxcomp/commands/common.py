"""Argument helpers shared by the subcommands.

Nothing here imports JAX: ``--help`` and config errors (bad ``--set`` keys and
types) are answered before any work starts.

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser(); add_config_arguments(p)
    >>> p.parse_args(["c.py", "--set", "seed=1"]).set
    ['seed=1']
"""

from __future__ import annotations

import argparse

import ml_collections

from jaxcomp.experiment.config import apply_overrides, load_config
from jaxcomp.experiment.validate import check_keys_take_effect


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: ...)`` to an option's help unless the help already
    states its default or there is none to state (``None``, ``False``, ``[]``).

    Example:
        >>> p = argparse.ArgumentParser(formatter_class=HelpFormatter)
        >>> _ = p.add_argument("--n", type=int, default=3, help="how many")
        >>> "how many (default: 3)" in p.format_help()
        True
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or action.default in (None, False, [], argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


def add_config_arguments(p: argparse.ArgumentParser,
                         out_help: str = "output directory (default: runs/<config name>)"
                         ) -> None:
    """Add ``CONFIG``, ``--set``, ``--out`` (described by ``out_help``) and
    ``--no-progress`` to ``p``."""
    p.add_argument("config", help="a config file (configs/*.py) with get_config()")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.epochs=3 (repeatable)")
    p.add_argument("--out", default=None, metavar="DIR", help=out_help)
    p.add_argument("--no-progress", action="store_true",
                   help="hide the progress bar (shown on stderr)")


def config_from_args(args: argparse.Namespace) -> ml_collections.ConfigDict:
    """The config file ``args.config`` with ``args.set`` applied (ConfigError if bad)."""
    cfg = load_config(args.config)
    apply_overrides(cfg, args.set)
    if getattr(args, "grid", None) is None:  # a sweep checks its keys over all its settings
        check_keys_take_effect([item.partition("=")[0].strip() for item in args.set], [cfg])
    return cfg
