"""Command-line flags for scale-out: ``--mesh``, ``--coordinator``,
``--num-processes``, ``--process-id``, ``--init-timeout``.

A subcommand calls :func:`add_distributed_arguments` on its parser and, first
thing in ``run`` (before any JAX computation), :func:`setup_from_args`, which
joins the process group (if any) and returns the mesh.

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser(); add_distributed_arguments(p)
    >>> args = p.parse_args(["--mesh", "data=-1"])
    >>> mesh = setup_from_args(args)
    >>> mesh.axis_names
    ('sweep', 'data', 'model')
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from jaxcomp.distributed.mesh import AXES, make_mesh, parse_mesh

if TYPE_CHECKING:  # adding the flags (the CLI's start-up) does not import JAX
    from jax.sharding import Mesh


def add_distributed_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the scale-out flags (in their own argument group) to ``parser``.

    Flags the parser already has (e.g. a subcommand's own ``--mesh``) are kept
    as they are, so this can be added to an existing command.
    """
    group = parser.add_argument_group("scale-out (see docs/scale_out.md)")
    have = set(parser._option_string_actions)

    class _G:
        @staticmethod
        def add_argument(flag: str, **kw: Any) -> None:
            if flag not in have:
                group.add_argument(flag, **kw)

    g = _G()
    g.add_argument("--mesh", default=None, metavar="AXIS=SIZE,...",
                   help=f"device mesh over all processes, axes {', '.join(AXES)}; e.g. "
                        "'sweep=4,data=2'; one size may be -1 (default: data=-1)")
    g.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="address of process 0 (default $JAX_COORDINATOR_ADDRESS); port + 1 is "
                        "used for a start-up rendezvous")
    g.add_argument("--num-processes", type=int, default=None,
                   help="number of processes (default $JAX_NUM_PROCESSES, else 1)")
    g.add_argument("--process-id", type=int, default=None,
                   help="this process's id, 0..N-1 (default $JAX_PROCESS_ID)")
    g.add_argument("--init-timeout", type=float, default=120.0, metavar="SECONDS",
                   help="how long to wait for all processes to start (default 120)")
    g.add_argument("--heartbeat-timeout", type=int, default=30, metavar="SECONDS",
                   help="a process silent this long counts as dead; the others stop "
                        "(default 30)")
    g.add_argument("--auto-cluster", action="store_true",
                   help="let JAX detect the cluster (Cloud TPU pod, Slurm, Open MPI)")


def setup_from_args(args: argparse.Namespace, mesh_default: Any = None) -> Mesh:
    """Join the process group described by ``args`` (if any) and build the mesh.

    ``mesh_default`` (e.g. a config's ``mesh`` block) is used when ``--mesh`` is
    not given. Must run before any other JAX call in the process.
    """
    from jaxcomp.distributed.multihost import initialize

    initialize(getattr(args, "coordinator", None), getattr(args, "num_processes", None),
               getattr(args, "process_id", None),
               timeout_s=getattr(args, "init_timeout", 120.0),
               heartbeat_s=getattr(args, "heartbeat_timeout", 30),
               auto=getattr(args, "auto_cluster", False))
    text = getattr(args, "mesh", None)
    return make_mesh(parse_mesh(text) if text else mesh_default)


__all__ = ["add_distributed_arguments", "setup_from_args"]
