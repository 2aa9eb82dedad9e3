"""``jaxcomp sensitivity CONFIG [--kind prune|quant] [--levels 0.5,0.9] [--where RULE]
[--out DIR]``: train the config's model, then prune (or quantize) one layer at a time
over a list of levels and write the accuracy per layer and level as CSV, markdown and a
PNG plot (as Distiller does). The library function is
:func:`jaxcomp.prune.sensitivity.sensitivity` (vectorized over levels).

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser(); add_arguments(p)
    >>> a = p.parse_args(["configs/lenet300_fmnist.py", "--levels", "0.5,0.9"])
    >>> parse_levels(a.levels, a.kind)
    [0.5, 0.9]
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import pathlib
from typing import Any

HELP = "prune or quantize one layer at a time over a list of levels; plot accuracy per layer"

DEFAULT_LEVELS = {"prune": [0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99],
                  "channels": [0.1, 0.25, 0.5, 0.75], "quant": [8, 6, 4, 3, 2]}
LIBRARY = "jaxcomp.prune.sensitivity"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from jaxcomp.commands.common import add_config_arguments

    add_config_arguments(p, out_help="output directory "
                                     "(default: runs/sensitivity_<config name>)")
    p.add_argument("--kind", default="prune", choices=("prune", "channels", "quant"),
                   help="prune (levels = sparsities), channels (fraction of a dependency "
                        "group's channels removed) or quant (levels = bit widths)")
    p.add_argument("--levels", default=None,
                   help="comma-separated levels (default: sparsities 0.1..0.99 or bits 8..2)")
    p.add_argument("--where", action="append", default=None, metavar="RULE",
                   help="only layers whose path matches this regex rule (repeatable; "
                        "default: every layer)")


def parse_levels(text: str | None, kind: str) -> list[float]:
    """The ``--levels`` list, checked: fractions in [0, 1), bit widths integers in [1, 32]."""
    from jaxcomp.core.errors import ConfigError, check_range

    if text is None:
        return list(DEFAULT_LEVELS[kind])
    try:
        levels = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--levels: got {text!r}; expected comma-separated numbers") from None
    if not levels:
        raise ConfigError(f"--levels: got {text!r}; expected at least one level")
    for v in levels:
        if kind != "quant":
            check_range("--levels (sparsity)", v, 0.0, 1.0, hi_open=True)
        else:
            check_range("--levels (bits)", v, 1, 32)
            if v != int(v):
                raise ConfigError(f"--levels (bits): got {v}; bit widths are integers")
    return [int(v) for v in levels] if kind == "quant" else levels


def library() -> Any:
    """The sensitivity library module, or a ConfigError if it is not installed."""
    from jaxcomp.core.errors import ConfigError

    try:
        return importlib.import_module(LIBRARY)
    except ModuleNotFoundError as e:
        if e.name != LIBRARY:
            raise
        raise ConfigError(f"sensitivity analysis needs {LIBRARY}, which this installation "
                          "does not have yet") from None


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``fn`` with the keyword arguments it accepts."""
    params = inspect.signature(fn).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    return fn(*args, **kwargs)


def train(cfg: Any, progress: bool) -> tuple[Any, Any, Any, Any]:
    """Train the config's model (with its families) and return
    ``(model, effective params, model_state, dataset)``."""
    from jaxcomp.experiment.plan import apply_plans
    from jaxcomp.experiment.run import RunContext, build_model, load_data, validate

    validate(cfg)
    ds = load_data(cfg)
    ctx = RunContext(cfg, ds, build_model(cfg, ds), progress=progress)
    apply_plans(cfg, ctx)
    res = ctx.fit()
    st = res.state
    params = ctx.transform.apply(st.params, st.comp_state) if ctx.transform else st.params
    return ctx.model, params, st.model_state, ds


def pivot(rows: list[dict[str, Any]]) -> tuple[list[str], list[Any], dict]:
    """``(layers, levels, {(layer, level): accuracy})`` from the library's rows."""
    lk = next(k for k in ("layer", "path", "name") if k in rows[0])
    vk = next(k for k in ("level", "sparsity", "bits") if k in rows[0])
    ak = next(k for k in ("accuracy", "test_accuracy") if k in rows[0])
    layers = list(dict.fromkeys(r[lk] for r in rows))
    levels = list(dict.fromkeys(r[vk] for r in rows))
    return layers, levels, {(r[lk], r[vk]): r[ak] for r in rows}


def to_markdown(rows: list[dict[str, Any]], kind: str) -> str:
    layers, levels, acc = pivot(rows)
    head = ["layer"] + [f"{'bits' if kind == 'quant' else 's'}={v:g}" for v in levels]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for layer in layers:
        cells = [f"{acc[(layer, v)]:.4f}" if (layer, v) in acc else "—" for v in levels]
        lines.append(f"| {layer} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from jaxcomp.commands.common import config_from_args
    from jaxcomp.experiment.validate import validate_config

    cfg = config_from_args(args)  # config and level errors come before JAX is imported
    validate_config(cfg)
    levels = parse_levels(args.levels, args.kind)
    lib = library()
    stem = pathlib.Path(args.config).stem
    out = pathlib.Path(args.out or os.path.join("runs", f"sensitivity_{stem}"))
    model, params, model_state, ds = train(cfg, progress=not args.no_progress)
    where = tuple(args.where) if args.where else None
    rows = _call(lib.sensitivity, model, params, model_state, ds, levels, where=where,
                 kind=args.kind, batch_size=cfg.train.eval_batch_size)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    if hasattr(lib, "write_csv"):
        _call(lib.write_csv, rows, str(out / "sensitivity.csv"))
        files.append(out / "sensitivity.csv")
    if hasattr(lib, "plot"):
        _call(lib.plot, rows, str(out / "sensitivity.png"),
              title=f"{args.kind} sensitivity: {pathlib.Path(args.config).name}")
        files.append(out / "sensitivity.png")
    md = to_markdown(rows, args.kind)
    (out / "sensitivity.md").write_text(f"# Sensitivity ({args.kind}): {args.config}\n\n"
                                        f"Test accuracy with one layer at a time compressed.\n\n"
                                        f"{md}\n")
    files.append(out / "sensitivity.md")
    print(md)
    print("wrote: " + ", ".join(str(f) for f in files))
    return 0
