"""``jaxcomp report DIR [--group-by KEY ...] [--metric NAME] [--size KEY] [--column KEY]
[--no-plots]``: tables (markdown, CSV; mean ± std over seeds) and PNG plots (accuracy
vs stored size / effective FLOPs with the Pareto front, accuracy vs each swept
value) of a sweep directory. The size is ``stored_bytes`` (the compressed model
as it would be saved, its encoding named), the FLOPs ``flops_effective``.

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser(); add_arguments(p)
    >>> p.parse_args(["runs/demo", "--group-by", "prune.sparsity"]).group_by
    ['prune.sparsity']
"""

from __future__ import annotations

import argparse

HELP = "write markdown/CSV tables and Pareto plots of a sweep directory; print the table"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="a sweep output directory (holding results.jsonl)")
    p.add_argument("--group-by", action="append", default=None, metavar="KEY",
                   help="group runs by this config key (repeatable; default: the swept keys "
                        "except seed); use --group-by none for one group")
    p.add_argument("--metric", default="test_accuracy", help="the accuracy metric to plot")
    p.add_argument("--size", action="append", default=None, metavar="KEY",
                   help="an extra size axis for the Pareto plots, the first one also for the "
                        "table's pareto column (a numeric metric or ledger key, e.g. flops, "
                        "int_bytes, decompose_totals.params_after; repeatable; default axes: "
                        "stored_bytes, flops_effective, nonzeros)")
    p.add_argument("--column", action="append", default=None, metavar="KEY",
                   help="an extra table column (a numeric metric or ledger key; repeatable)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")


def run(args: argparse.Namespace) -> int:
    from jaxcomp.sweep.report import write_report

    group_by = args.group_by
    if group_by is not None:
        group_by = [g for g in group_by if g.lower() != "none"]
    out = write_report(args.dir, group_by=group_by, metric=args.metric,
                       plots=not args.no_plots, sizes=args.size,
                       columns=args.column)
    print(out["text"])
    print("wrote: " + ", ".join(out["files"]))
    return 0
