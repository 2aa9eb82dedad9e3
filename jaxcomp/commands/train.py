"""``jaxcomp train CONFIG [--set key=value ...] [--out DIR]``: train one model
(with the config's compression) and print a results line.

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser(); add_arguments(p)
    >>> p.parse_args(["configs/lenet300_fmnist.py", "--out", "runs/x"]).out
    'runs/x'
"""

from __future__ import annotations

import argparse
import os

from jaxcomp.commands.common import add_config_arguments, config_from_args
from jaxcomp.core.files import write_json_atomic
from jaxcomp.experiment.validate import validate_config

HELP = "train one model from a config and print a results line"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from jaxcomp.distributed.args import add_distributed_arguments

    add_config_arguments(p, out_help="write result.json (and checkpoints, if "
                                     "train.checkpoint) here (default: none, nothing is "
                                     "written)")
    add_distributed_arguments(p)


def format_result(record: dict) -> str:
    m, led = record["metrics"], record["ledger"]
    parts = []
    for k in ("test_accuracy", "test_nll"):
        if k in m:
            parts.append(f"{k}={m[k]:.4f}")
    for k, v in m.items():
        if k not in ("test_accuracy", "test_nll", "train_loss", "train_accuracy") and \
                isinstance(v, float):
            parts.append(f"{k}={v:.4g}")
    for k in ("params", "nonzeros", "bytes", "flops"):
        if k in led:
            parts.append(f"{k}={led[k]:.4g}" if isinstance(led[k], float) else f"{k}={led[k]}")
    if m.get("diverged"):
        parts.append(f"DIVERGED at step {m.get('diverged_step')}")
    return "result: " + " ".join(parts)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)  # config errors are reported before JAX is imported
    validate_config(cfg)  # every family's keys, on or off (no JAX either)
    from jaxcomp.distributed.args import setup_from_args
    from jaxcomp.distributed.multihost import is_writer
    from jaxcomp.experiment.run import run_experiment

    mesh = setup_from_args(args, cfg.mesh)
    record = run_experiment(cfg, progress=not args.no_progress, out_dir=args.out, mesh=mesh)
    if args.out and is_writer():
        write_json_atomic(os.path.join(args.out, "result.json"), record)
    print(format_result(record))
    return 1 if record["metrics"].get("diverged") else 0
