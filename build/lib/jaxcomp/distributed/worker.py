"""A small scale-out job — a data-parallel run and a sharded sweep of a tiny MLP on
synthetic data — run the same way on 1 device, N devices or N processes.

Used by the equivalence tests and as the smoke test in ``docs/scale_out.md``::

    python -m jaxcomp.distributed.worker --task both --mesh sweep=2,data=4 --out r.json
    # the same on two processes (run each line in its own shell):
    JAX_PROCESS_ID=0 python -m jaxcomp.distributed.worker --coordinator 127.0.0.1:5000 \\
        --num-processes 2 --mesh sweep=2,data=4 --out r.json
    JAX_PROCESS_ID=1 python -m jaxcomp.distributed.worker --coordinator 127.0.0.1:5000 \\
        --num-processes 2 --mesh sweep=2,data=4 --out r.json

Only process 0 writes ``--out`` (atomically, after all training finished).
Exit status: 0 done, 2 bad input (a one-line ``error:`` message), 3 this process was
stopped because another process of the run died (JAX's coordination service aborts
the survivors; a multi-process worker runs the job in a supervised child so that
ends in a one-line ``error: distributed:`` message rather than a bare abort).

Example:
    >>> p = build_parser()
    >>> p.parse_args(["--task", "dp", "--mesh", "data=1"]).task
    'dp'
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from jaxcomp.core.errors import ConfigError
from jaxcomp.core.files import write_json_atomic
from jaxcomp.distributed.args import add_distributed_arguments, setup_from_args
from jaxcomp.distributed.supervise import (
    die_with_supervisor,
    exit_on_peer_failure,
    needs_supervisor,
    supervise,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m jaxcomp.distributed.worker",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--task", choices=("dp", "sweep", "both"), default="both")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--settings", type=int, default=8, help="sweep size S")
    p.add_argument("--num-train", type=int, default=512)
    p.add_argument("--dp-mesh", default=None,
                   help="mesh for the data-parallel run (default: --mesh)")
    p.add_argument("--out", default=None, help="results JSON (written by process 0 only)")
    p.add_argument("--checkpoint-dir", default=None,
                   help="data-parallel run: checkpoint every epoch here, resume from it")
    p.add_argument("--die-after-epoch", type=int, default=0,
                   help="testing: the process --die-process exits abruptly after this epoch")
    p.add_argument("--die-process", type=int, default=1)
    add_distributed_arguments(p)
    return p


def _flat(tree: Any) -> list[float]:
    import jax
    import numpy as np

    from jaxcomp.distributed.sharding import to_host

    return [float(v) for leaf in jax.tree.leaves(tree) for v in np.ravel(to_host(leaf))]


def run_job(args: argparse.Namespace) -> dict[str, Any]:
    mesh = setup_from_args(args)
    import jax
    import numpy as np
    import optax

    from jaxcomp.data import synthetic
    from jaxcomp.distributed.data_parallel import fit_data_parallel
    from jaxcomp.distributed.mesh import make_mesh, parse_mesh
    from jaxcomp.distributed.sharding import batch_sharding, process_rows
    from jaxcomp.distributed.vectorized import fit_stacked, init_stacked
    from jaxcomp.models import get_model

    def maybe_die(epoch, *_):
        if args.die_after_epoch and epoch >= args.die_after_epoch and \
                jax.process_index() == args.die_process:
            print(f"process {jax.process_index()}: dying after epoch {epoch} (test)",
                  file=sys.stderr, flush=True)
            os._exit(17)

    ds = synthetic(num_train=args.num_train, num_test=200, shape=(8, 8, 1), num_classes=4)
    model = get_model("mlp", input_shape=ds.input_shape, num_classes=4, features=(32,))
    out: dict[str, Any] = {"mesh": dict(mesh.shape), "processes": jax.process_count(),
                           "devices": jax.device_count()}
    if args.task in ("dp", "both"):
        dp_mesh = make_mesh(parse_mesh(args.dp_mesh)) if args.dp_mesh else mesh
        r = fit_data_parallel(model, ds, optax.adam(1e-2), mesh=dp_mesh, epochs=args.epochs,
                              batch_size=args.batch_size, seed=3, on_epoch=maybe_die,
                              checkpoint_dir=args.checkpoint_dir)
        rows = process_rows(batch_sharding(dp_mesh), (args.batch_size,))
        out["dp"] = {"history": r.history, "params": _flat(r.state.params),
                     "mesh": dict(dp_mesh.shape), "process0_rows": [rows.start, rows.stop]}
    if args.task in ("sweep", "both"):
        tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
        lrs = np.linspace(0.02, 0.3, args.settings).astype(np.float32)

        def set_lr(state, lr):
            hp = dict(state.opt_state.hyperparams, learning_rate=lr)
            return state._replace(opt_state=state.opt_state._replace(hyperparams=hp))

        state = init_stacked(model, ds, tx, seeds=list(range(args.settings)), mesh=mesh,
                             settings=lrs, apply_setting=set_lr)
        r = fit_stacked(model, ds, tx, state, mesh=mesh, epochs=args.epochs,
                        batch_size=args.batch_size, data_seed=5, on_epoch=maybe_die)
        out["sweep"] = {"history": [{k: np.asarray(v).tolist() for k, v in h.items()}
                                    for h in r.history],
                        "params": _flat(r.state.params)}
    return out


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    die_with_supervisor()
    if needs_supervisor(args.coordinator, args.num_processes, args.process_id):
        return supervise("jaxcomp.distributed.worker", argv, args.process_id)
    try:
        out = run_job(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    except Exception as e:  # another process died mid-collective: one line, exit 3
        exit_on_peer_failure(e)
        raise
    from jaxcomp.distributed.multihost import is_writer

    if args.out and is_writer():
        write_json_atomic(args.out, out)
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
