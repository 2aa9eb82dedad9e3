"""``jaxcomp reproduce T<n> | all [--quick] [--out DIR]``: run paper-table
reproductions and write their results files.

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser(); add_arguments(p)
    >>> p.parse_args(["T1", "--quick"]).quick
    True
"""

from __future__ import annotations

import argparse
import time

from jaxcomp.experiment.paper_table import (
    git_commit,
    load_table,
    tables,
    write_index,
    write_results,
)
from jaxcomp.lab.tables import table_modules

HELP = ("reproduce a paper table (T<n>, or all): full runs write docs/results/T<n>.md/.json "
        "in a checkout; --quick smoke tests write under runs/reproduce_quick")


def add_arguments(p: argparse.ArgumentParser) -> None:
    names = list(table_modules())
    p.add_argument("table", help=f"{names[0]} … {names[-1]}, or 'all'")
    p.add_argument("--quick", action="store_true",
                   help="smoke-test size (minutes; claims are not meaningful at this size); "
                        "results go to <out>/T<n>_quick.*")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="results directory (default: docs/results for a full run in a "
                        "checkout, runs/reproduce_quick for --quick, runs/reproduce for an "
                        "installed package)")


def run(args: argparse.Namespace) -> int:
    names = sorted(tables(), key=lambda t: int(t[1:])) if args.table.lower() == "all" \
        else [args.table.upper()]
    failed = []
    commit = git_commit()  # the code these runs use: read before any result is written
    for name in names:
        module = load_table(name)
        t0 = time.perf_counter()
        result = module.run(quick=args.quick)
        cmd = f"jaxcomp reproduce {name}" + (" --quick" if args.quick else "")
        md, _ = write_results(result, args.out, cmd, commit=commit)
        seconds = time.perf_counter() - t0
        if args.quick:
            print(f"{name} quick smoke test ran end to end ({seconds:.0f} s; too small for the "
                  f"claims to mean anything: run without --quick to check them) — {md}")
        else:
            print(f"{name} {'PASS' if result.passed else 'FAIL'} ({seconds:.0f} s) — {md}")
        for c in result.claims:
            status = "value" if args.quick else c.to_dict()["status"]
            print(f"  {status:6s} {c.id}: {c.text}: {c.value:.4g} {c.op} {c.threshold:g}")
        if not result.passed:
            failed.append(name)
        write_index(md.parent)
    # Quick runs are smoke tests: they must run end to end, not pass the claims.
    return 0 if args.quick or not failed else 1
