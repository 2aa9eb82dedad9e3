"""Sensitivity analysis (as in Distiller): compress one layer at a time at a list of
levels, evaluate, and tabulate / plot accuracy against the level for every layer.

Kinds:

* ``"prune"`` — magnitude-prune the one tensor to each sparsity (exact counts);
* ``"channels"`` — remove the lowest-norm fraction of one dependency group's
  channels (structured; "layers" are group names);
* ``"quant"`` — symmetric per-output-channel uniform quantization of the one
  tensor at each bit width (levels are bits).

All levels of one layer are evaluated in one compiled call: the level is a
traced scalar and the evaluation is ``jax.vmap``-ed over the level array.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp.data import synthetic
    >>> from jaxcomp.models import get_model
    >>> from jaxcomp.prune.sensitivity import sensitivity
    >>> ds = synthetic(num_train=64, num_test=64, shape=(6,), num_classes=3)
    >>> model = get_model("mlp", input_shape=(6,), num_classes=3, features=(8,))
    >>> params, state = model.init(jax.random.key(0), jnp.ones((1, 6)))
    >>> rows = sensitivity(model, params, state, ds, [0.0, 0.5])
    >>> [(r["layer"], r["level"]) for r in rows][:3]
    [('Dense_0/kernel', 0.0), ('Dense_0/kernel', 0.5), ('Dense_1/kernel', 0.0)]
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcomp.core import paths as _paths
from jaxcomp.core.errors import ConfigError, check_choice, check_range
from jaxcomp.core.select import selected_paths
from jaxcomp.train.losses import correct, per_example_nll

KINDS = ("prune", "channels", "quant")


def quantize_per_channel(w: jax.Array, bits: Any) -> jax.Array:
    """Symmetric uniform fake-quantization, one scale per output channel (last axis);
    ``bits`` may be traced.

    Example:
        >>> import jax.numpy as jnp
        >>> quantize_per_channel(jnp.array([[0.1, -1.0], [0.5, 0.26]]), 2).tolist()
        [[0.0, -1.0], [0.5, 0.0]]
    """
    qmax = 2.0 ** (jnp.asarray(bits, jnp.float32) - 1) - 1
    amax = jnp.max(jnp.abs(w), axis=tuple(range(w.ndim - 1)), keepdims=True)
    scale = jnp.where(amax > 0, amax / jnp.maximum(qmax, 1.0), 1.0)
    return (jnp.clip(jnp.round(w / scale), -qmax, qmax) * scale).astype(w.dtype)


def _check_levels(levels: Sequence[Any], kind: str) -> np.ndarray:
    if len(levels) == 0:
        raise ConfigError("sensitivity.levels: got an empty list")
    for v in levels:
        if kind == "quant":
            check_range("sensitivity.levels (bits)", v, 1, 32)
        else:
            check_range("sensitivity.levels (sparsity)", v, 0.0, 1.0, hi_open=True)
    return np.asarray(levels, np.float32)


def _layer_fns(model, params, model_state, dataset, where, kind, norm
               ) -> list[tuple[str, Callable[[Any, Any], Any]]]:
    """``[(layer name, level -> params)]`` for each layer to analyse."""
    if kind == "channels":
        from jaxcomp.prune.channels import apply_masks, channel_masks
        from jaxcomp.prune.groups import dependency_groups

        graph = dependency_groups(model, params, model_state,
                                  jnp.asarray(dataset.x_test[:2]))
        names = graph.select(where)
        return [(n, lambda p, lv, n=n: apply_masks(
            p, channel_masks(p, graph, {n: lv}, norm=norm, where=[n], jit=False)))
            for n in names]
    from jaxcomp.prune.masks import topk_mask

    out = []
    for path in selected_paths(params, where):
        if kind == "prune":
            def fn(p, lv, path=path):
                return _paths.map_with_path(
                    lambda q, x: jnp.where(topk_mask(jnp.abs(x), lv), x, 0) if q == path
                    else x, p)
        else:
            def fn(p, lv, path=path):
                return _paths.map_with_path(
                    lambda q, x: quantize_per_channel(x, lv) if q == path else x, p)
        out.append((path, fn))
    return out


def sensitivity(model: Any, params: Any, model_state: Any, dataset: Any,
                levels: Sequence[float], where: Any = None, kind: str = "prune", *,
                norm: str = "l1", batch_size: int = 1000, split: str = "test",
                progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Accuracy with one layer at a time compressed to each level.

    Args:
      model: a :class:`jaxcomp.flax.Model`.
      params, model_state: the trained model's variables.
      dataset: a :class:`jaxcomp.data.Dataset`; its ``split`` (``"test"`` or ``"val"``)
        is evaluated.
      levels: sparsities in ``[0, 1)`` (``prune``, ``channels``) or bit widths (``quant``).
      where: which layers (``where=`` rules over param paths, or over group names for
        ``channels``); default: every kernel / every group.
      kind: ``"prune"``, ``"channels"`` or ``"quant"``.
      norm: ``"l1"`` or ``"l2"`` channel ranking (``channels``).
      batch_size: evaluation batch size (the last batch is padded).
      progress: called with each layer name before it is evaluated.

    Returns:
      One row per (layer, level): ``{"layer", "level", "kind", "accuracy", "nll",
      "baseline_accuracy"}``, layers in model order, levels in the given order.
    """
    check_choice("sensitivity.kind", kind, KINDS)
    check_choice("sensitivity.split", split, ("test", "val"))
    lv = _check_levels(levels, kind)
    x, y = (dataset.x_test, dataset.y_test) if split == "test" else (dataset.x_val,
                                                                      dataset.y_val)
    if x is None:
        raise ConfigError("sensitivity.split='val': the dataset has no validation split")
    if where is not None and not callable(where) and not isinstance(where, str):
        where = list(where)
    layers = _layer_fns(model, params, model_state, dataset, where, kind, norm)
    bs = min(int(batch_size), len(x))
    base = _evaluate(model, params, model_state, lambda p, _: p, np.zeros(1, np.float32),
                     x, y, bs)[0][0]
    rows = []
    for name, fn in layers:
        if progress is not None:
            progress(name)
        acc, nll = _evaluate(model, params, model_state, fn, lv, x, y, bs)
        for i, level in enumerate(levels):
            rows.append({"layer": name, "level": level, "kind": kind,
                         "accuracy": float(acc[i]), "nll": float(nll[i]),
                         "baseline_accuracy": float(base)})
    return rows


def _evaluate(model, params, model_state, fn, levels, x, y, bs):
    def one(level, p, xb, yb, w):
        logits, _ = model.apply(fn(p, level), model_state, xb, train=False)
        return jnp.sum(correct(logits, yb) * w), jnp.sum(per_example_nll(logits, yb) * w)

    run = jax.jit(jax.vmap(one, in_axes=(0, None, None, None, None)))
    lv = jnp.asarray(levels)
    hits = np.zeros(len(levels))
    nll = np.zeros(len(levels))
    for i in range(0, len(x), bs):
        xb, yb = np.asarray(x[i:i + bs]), np.asarray(y[i:i + bs])
        w = np.ones(len(xb), np.float32)
        if len(xb) < bs:
            pad = bs - len(xb)
            xb = np.concatenate([xb, np.zeros((pad, *xb.shape[1:]), xb.dtype)])
            yb = np.concatenate([yb, np.zeros(pad, yb.dtype)])
            w = np.concatenate([w, np.zeros(pad, np.float32)])
        c, n = run(lv, params, xb, yb, w)
        hits += np.asarray(c)
        nll += np.asarray(n)
    return hits / len(x), nll / len(x)


def write_csv(rows: list[dict[str, Any]], path: str) -> None:
    """Write the rows as CSV (columns: the keys of the first row)."""
    if not rows:
        raise ConfigError("write_csv: no rows to write")
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def read_csv(path: str) -> list[dict[str, Any]]:
    """Read rows written by :func:`write_csv` (numbers parsed back)."""
    def num(v):
        try:
            return float(v)
        except ValueError:
            return v

    with open(path, newline="") as f:
        return [{k: num(v) for k, v in r.items()} for r in csv.DictReader(f)]


def plot(rows: list[dict[str, Any]], path: str, title: str | None = None) -> None:
    """Accuracy vs level, one line per layer (PNG via matplotlib's Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        raise ConfigError("plot: no rows to plot")
    kind = rows[0].get("kind", "prune")
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    for layer in dict.fromkeys(r["layer"] for r in rows):
        pts = sorted((r["level"], r["accuracy"]) for r in rows if r["layer"] == layer)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=layer)
    if "baseline_accuracy" in rows[0]:
        ax.axhline(rows[0]["baseline_accuracy"], color="gray", ls="--", lw=1, label="baseline")
    ax.set_xlabel("bits" if kind == "quant" else "sparsity")
    ax.set_ylabel("accuracy")
    ax.set_title(title or f"Sensitivity ({kind}): one layer at a time")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


__all__ = ["KINDS", "plot", "quantize_per_channel", "read_csv", "sensitivity", "write_csv"]
