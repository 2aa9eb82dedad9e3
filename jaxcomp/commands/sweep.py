"""``jaxcomp sweep CONFIG [--set key=value ...] [--grid key=[v1,v2] ...] [--out DIR]``:
expand the config's ``get_sweep()`` grid and run it — settings that differ
only in array-held numbers vmapped together — into a resumable results store.

On several devices the config's ``mesh`` block (or ``--mesh``) splits the
vectorized settings over ``sweep`` and every batch over ``data``; with
``--coordinator/--num-processes/--process-id`` (or the ``JAX_*`` variables)
several processes run the same sweep and process 0 writes the store.

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
    p.add_argument("--chunk-size", type=int, default=32, metavar="N",
                   help="at most this many settings per vmapped program (memory bound)")
    p.add_argument("--no-vectorize", action="store_true",
                   help="run every setting one after another (the reference path)")
    p.add_argument("--mesh", default=None, metavar="sweep=S[,data=D,model=M]",
                   help="device mesh over all processes (default: the config's mesh block, "
                        "data=-1): vectorized settings are split over 'sweep', every batch "
                        "over 'data'; e.g. --mesh sweep=4,data=2 (see docs/scale_out.md)")
    p.add_argument("--tensorboard", action="store_true",
                   help="write TensorBoard event files under OUT/tb/<run key> (needs tensorboardX)")
    from jaxcomp.distributed.args import add_distributed_arguments

    add_distributed_arguments(p)  # --coordinator, --num-processes, --process-id, ...


def default_out(config_path: str) -> str:
    return os.path.join("runs", pathlib.Path(config_path).stem)


def run(args: argparse.Namespace) -> int:
    from jaxcomp.core.errors import ConfigError

    if args.chunk_size < 1:
        raise ConfigError(f"--chunk-size: got {args.chunk_size}; allowed range [1, inf)")
    cfg = config_from_args(args)  # before the sweep machinery (and JAX) is imported
    from jaxcomp.experiment.validate import validate_config
    from jaxcomp.sweep.grid import expand, from_overrides, load_sweep, product

    spec = load_sweep(args.config)
    extra = from_overrides(args.grid)
    if extra is not None:
        spec = extra if spec is None else product(spec, extra)
    for _, setting_cfg in expand(cfg, spec):  # every setting's keys, still without JAX
        validate_config(setting_cfg)
    from jaxcomp.sweep.runner import SweepRunner
    out = args.out or default_out(args.config)
    from jaxcomp.distributed.args import setup_from_args

    mesh = setup_from_args(args, cfg.mesh)  # joins the process group first, if any
    import jax

    runner = SweepRunner(cfg, spec, out, chunk_size=args.chunk_size,
                         mesh=mesh if mesh.size > 1 else None,
                         vectorize=False if args.no_vectorize else "auto",
                         progress=not args.no_progress, tensorboard=args.tensorboard,
                         config_path=args.config)
    s = runner.run()
    where = f" on mesh {_mesh_text(mesh)}" if mesh.size > 1 else ""
    if jax.process_count() > 1:
        where += f" over {jax.process_count()} processes"
        if not runner.writer:
            print(f"sweep: process {jax.process_index()} done ({s['ran']} runs{where}; "
                  f"process 0 wrote the results)")
            return 1 if s["error"] else 0
    print(f"sweep: {s['runs']} runs ({s['skipped']} already done, {s['ran']} run now{where}: "
          f"{s['vectorized']} vectorized, {s['sequential']} one by one, {s['diverged']} "
          f"diverged, {s['error']} failed); {s['compiles']} compile(s) of the vectorized "
          f"program; {s['seconds']:.1f} s; results in {s['out']}/results.jsonl")
    return 1 if s["error"] else 0


def _mesh_text(mesh) -> str:
    return ",".join(f"{k}={v}" for k, v in mesh.shape.items())
