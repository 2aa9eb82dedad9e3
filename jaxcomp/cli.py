"""The ``jaxcomp`` command. Each subcommand lives in ``jaxcomp/commands/<name>.py``
and defines ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.

Bad input (a :class:`jaxcomp.ConfigError`) is printed as one line on stderr
with exit status 2 — never a traceback. No command prints the help on stderr,
also with exit status 2. Building the parser, ``--help``, ``--version`` and
config errors do not import JAX: a command imports what it needs in ``run``.

Example:
    >>> from jaxcomp.cli import main
    >>> main(["train", "no/such/config.py"])
    2
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from jaxcomp.commands.common import HelpFormatter
from jaxcomp.core.errors import ConfigError

COMMANDS = ("train", "sweep", "report", "sensitivity", "reproduce")


def _load_commands() -> dict:
    mods = {}
    for name in COMMANDS:
        try:
            mods[name] = importlib.import_module(f"jaxcomp.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"jaxcomp.commands.{name}":
                raise
    return mods


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    """The ``jaxcomp`` parser (options show their defaults) and the command modules."""
    parser = argparse.ArgumentParser(
        prog="jaxcomp", formatter_class=HelpFormatter,
        description="Neural-network compression for JAX: pruning, quantization, "
                    "distillation and tensor decomposition.",
        epilog="Run 'jaxcomp COMMAND --help' for a command's options.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    mods = _load_commands()
    for name, mod in mods.items():
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP,
                           formatter_class=HelpFormatter)
        mod.add_arguments(p)
    return parser, mods


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    parser, mods = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse already printed a usage line
        return int(e.code or 0)
    if args.version:
        from jaxcomp import __version__

        print(__version__)
        return 0
    if not args.command:
        parser.print_help(sys.stderr)
        return 2
    from jaxcomp.distributed.supervise import die_with_supervisor, needs_supervisor, supervise

    die_with_supervisor()
    if hasattr(args, "coordinator") and needs_supervisor(args.coordinator, args.num_processes,
                                                         args.process_id):
        return supervise("jaxcomp.cli", list(sys.argv[1:] if argv is None else argv),
                         args.process_id, prefix=f"jaxcomp {args.command}: error")
    try:
        return int(mods[args.command].run(args) or 0)
    except ConfigError as e:
        print(f"jaxcomp {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"jaxcomp {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # another process died mid-collective: one line, not a traceback
        from jaxcomp.distributed.supervise import exit_on_peer_failure

        exit_on_peer_failure(e, prefix=f"jaxcomp {args.command}: error")
        raise


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
