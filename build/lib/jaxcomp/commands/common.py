"""Argument helpers shared by the subcommands.

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


def add_config_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="a config file (configs/*.py) with get_config()")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.epochs=3 (repeatable)")
    p.add_argument("--out", default=None, help="output directory")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def config_from_args(args: argparse.Namespace) -> ml_collections.ConfigDict:
    cfg = load_config(args.config)
    apply_overrides(cfg, args.set)
    return cfg
