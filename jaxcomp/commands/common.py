"""Argument helpers shared by the subcommands.

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser(); add_config_arguments(p)
    >>> p.parse_args(["c.py", "--set", "seed=1"]).set
    ['seed=1']
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

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


def write_json_atomic(path: str, obj: Any) -> None:
    """Write JSON to ``path`` via a temporary file and an atomic rename."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
