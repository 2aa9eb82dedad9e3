"""``jaxcomp sweep CONFIG [--set key=value ...] [--grid key=[v1,v2] ...] [--out DIR]``:
expand the config's ``get_sweep()`` grid and run it — settings that differ
only in array-held numbers vmapped together — into a resumable results store.

Rerunning the same command continues a killed sweep (finished runs are
skipped); a directory made by another config is refused.

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser(); add_arguments(p)
    >>> a = p.parse_args(["configs/demo_sweep.py", "--grid", "seed=[0,1]", "--chunk-size", "4"])
    >>> a.grid, a.chunk_size
    (['seed=[0,1]'], 4)
"""

from __future__ import annotations

import argparse
import os
import pathlib

from jaxcomp.commands.common import add_config_arguments, config_from_args

HELP = "run a config's sweep grid (vectorized where possible, resumable) into a results store"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)
    p.add_argument("--grid", action="append", default=[], metavar="KEY=[V1,V2]",
                   help="sweep KEY over a list (product with the config's get_sweep(); "
                        "repeatable)")
    p.add_argument("--chunk-size", type=int, default=32,
                   help="at most this many settings per vmapped program (memory bound)")
    p.add_argument("--no-vectorize", action="store_true",
                   help="run every setting one after another (the reference path)")
    p.add_argument("--mesh", default=None, metavar="sweep=S[,data=D]",
                   help="split the stacked settings of vectorized groups over the 'sweep' axis "
                        "of a device mesh (jaxcomp.distributed), e.g. --mesh sweep=8")
    p.add_argument("--tensorboard", action="store_true",
                   help="write TensorBoard event files under OUT/tb/<run key> (needs tensorboardX)")


def default_out(config_path: str) -> str:
    return os.path.join("runs", pathlib.Path(config_path).stem)


def run(args: argparse.Namespace) -> int:
    from jaxcomp.core.errors import ConfigError
    from jaxcomp.sweep.grid import from_overrides, load_sweep, product
    from jaxcomp.sweep.runner import SweepRunner

    cfg = config_from_args(args)
    spec = load_sweep(args.config)
    extra = from_overrides(args.grid)
    if extra is not None:
        spec = extra if spec is None else product(spec, extra)
    if args.chunk_size < 1:
        raise ConfigError(f"--chunk-size: got {args.chunk_size}; allowed range [1, inf)")
    out = args.out or default_out(args.config)
    place, multiple = None, 1
    if args.mesh:
        from jaxcomp.distributed.mesh import axis_size, make_mesh
        from jaxcomp.distributed.sharding import shard_stacked

        mesh = make_mesh(args.mesh)
        place, multiple = (lambda tree: shard_stacked(tree, mesh)), axis_size(mesh, "sweep")
    runner = SweepRunner(cfg, spec, out, chunk_size=args.chunk_size, place=place,
                         multiple_of=multiple,
                         vectorize=False if args.no_vectorize else "auto",
                         progress=not args.no_progress, tensorboard=args.tensorboard,
                         config_path=args.config)
    s = runner.run()
    print(f"sweep: {s['runs']} runs ({s['skipped']} already done, {s['ran']} run now: "
          f"{s['vectorized']} vectorized, {s['sequential']} one by one, {s['diverged']} "
          f"diverged, {s['error']} failed); {s['compiles']} compile(s) of the vectorized "
          f"program; {s['seconds']:.1f} s; results in {s['out']}/results.jsonl")
    return 1 if s["error"] else 0
