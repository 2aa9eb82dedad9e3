"""Mixed precision: per-layer bit widths by rules, or allocated under a size budget.

* :func:`bits_by_rules` — ``[(pattern, bits), ...]`` resolved over the param
  paths (first full match wins, see :mod:`jaxcomp.core.select`);
* :func:`quantize_layers` — fake-quantize each layer at its bits with the
  uniform quantizer (symmetric; per output channel by default);
* :func:`sensitivity` — quantize **one layer at a time** at each candidate bit
  width and measure the metric drop (Distiller-style sensitivity analysis);
* :func:`allocate_greedy` / :func:`allocate_knapsack` — choose one bit width
  per layer minimizing the summed predicted drop under a bytes budget (greedy
  by drop per byte saved, or exact multiple-choice knapsack by dynamic
  programming);
* :func:`pareto_front` and :func:`write_pareto` — size vs predicted (and
  optionally measured) drop over a range of budgets, written as CSV, JSON and PNG.

Sizes (:func:`layer_bytes`) are ``ceil(n * bits / 8)`` bytes of packed codes
plus one float32 scale per channel; a budget counts the whole model, the
leaves that are not quantized at float32.

Example:
    >>> import jax.numpy as jnp
    >>> from jaxcomp.quant.mixed_precision import allocate_knapsack, bits_by_rules
    >>> params = {"a": {"kernel": jnp.ones((4, 4))}, "b": {"kernel": jnp.ones((4, 2))}}
    >>> bits_by_rules(params, [("a/.*", 4), (".*", 8)])
    {'a/kernel': 4, 'b/kernel': 8}
    >>> drops = {"a": {2: 0.5, 8: 0.0}, "b": {2: 0.1, 8: 0.0}}
    >>> sizes = {"a": {2: 10, 8: 40}, "b": {2: 10, 8: 40}}
    >>> allocate_knapsack(drops, sizes, budget=50)
    {'a': 8, 'b': 2}
"""

from __future__ import annotations

import csv
import functools
import json
import math
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcomp.core import paths as _paths
from jaxcomp.core.errors import ConfigError
from jaxcomp.core.select import Where, resolve_rules, selected_paths
from jaxcomp.quant.uniform import SUPPORTED_BITS, fake_quant

Table = Mapping[str, Mapping[int, float]]


def check_bits_value(what: str, bits: Any) -> int:
    """One bit width: an int in :data:`~jaxcomp.quant.uniform.SUPPORTED_BITS`."""
    if isinstance(bits, bool) or not isinstance(bits, int | np.integer) or \
            int(bits) not in SUPPORTED_BITS:
        raise ConfigError(f"{what}: got {bits!r}; allowed: {', '.join(map(str, SUPPORTED_BITS))}")
    return int(bits)


def check_candidates(candidate_bits: Sequence[int]) -> list[int]:
    """Sorted, distinct, supported candidate bit widths (at least one)."""
    if not candidate_bits:
        raise ConfigError("mixed_precision.candidate_bits: got an empty list; allowed: "
                          f"a non-empty subset of {SUPPORTED_BITS}")
    return sorted({check_bits_value(f"mixed_precision.candidate_bits[{i}]", b)
                   for i, b in enumerate(candidate_bits)})


def bits_by_rules(params: Any, rules: Sequence[tuple[str, int]], *,
                  where: Where = None) -> dict[str, int]:
    """``{path: bits}`` for the selected leaves that a ``(pattern, bits)`` rule matches.

    Leaves outside ``where`` (default: float leaves with ``ndim >= 2``) or
    matched by a rule whose bits are ``None`` stay in float.

    Raises:
      ConfigError: a rule matching no path, or bits outside the supported set
        (the message names the path).
    """
    sel = set(selected_paths(params, where))
    resolved = resolve_rules(params, list(rules), default=None, what="mixed_precision.rules")
    out = {}
    for p, b in resolved.items():
        if p in sel and b is not None:
            out[p] = check_bits_value(f"mixed_precision.bits[{p}]", b)
    return out


def _channel_axis(x: Any, per_channel: bool) -> int | None:
    return (np.ndim(x) - 1) if per_channel and np.ndim(x) >= 2 else None


@functools.partial(jax.jit, static_argnames=("axis",))
def _fake_quant_jit(x, bits, axis):
    # Bits as an array: one compiled program per shape serves a whole bit sweep.
    return fake_quant(x, bits, axis=axis)


def quantize_layers(params: Any, bits: Mapping[str, int], *, per_channel: bool = True) -> Any:
    """Fake-quantize each leaf in ``bits`` at its bit width (others unchanged)."""
    known = set(_paths.all_paths(params))
    for p, b in bits.items():
        if p not in known:
            raise ConfigError(f"mixed_precision.bits: {p!r} is not a parameter path; "
                              f"available: {sorted(known)[:10]}")
        check_bits_value(f"mixed_precision.bits[{p}]", b)
    return _paths.map_with_path(
        lambda p, x: _fake_quant_jit(x, jnp.asarray(bits[p], jnp.int32),
                                     _channel_axis(x, per_channel))
        if p in bits else x, params)


def layer_bytes(shape: Sequence[int], bits: int, *, per_channel: bool = True) -> int:
    """Packed ``bits``-bit codes plus float32 scales (one per output channel or one)."""
    n = math.prod(shape)
    scales = shape[-1] if per_channel and len(shape) >= 2 else 1
    return math.ceil(n * bits / 8) + 4 * scales


def size_table(params: Any, paths: Sequence[str], candidate_bits: Sequence[int], *,
               per_channel: bool = True) -> dict[str, dict[int, int]]:
    """``{path: {bits: bytes}}`` for the given leaves and candidate bit widths."""
    cands = check_candidates(candidate_bits)
    pd = _paths.path_dict(params)
    return {p: {b: layer_bytes(np.shape(pd[p]), b, per_channel=per_channel) for b in cands}
            for p in paths}


def fixed_bytes(params: Any, quantized: Sequence[str]) -> int:
    """Float32 bytes of the leaves that are not quantized."""
    q = set(quantized)
    return int(sum(4 * np.size(x) for p, x in _paths.flatten(params) if p not in q))


def model_bytes(params: Any, bits: Mapping[str, int], *, per_channel: bool = True) -> int:
    """Bytes of the whole model: quantized leaves packed, the rest float32."""
    pd = _paths.path_dict(params)
    return fixed_bytes(params, list(bits)) + sum(
        layer_bytes(np.shape(pd[p]), b, per_channel=per_channel) for p, b in bits.items())


def sensitivity(params: Any, metric_fn: Callable[[Any], float],
                candidate_bits: Sequence[int], *, where: Where = None,
                per_channel: bool = True, higher_is_better: bool = True,
                ) -> tuple[float, dict[str, dict[int, float]]]:
    """Quantize one layer at a time at each bit width and measure the drop.

    Args:
      params: the float params.
      metric_fn: ``params -> float`` (e.g. test accuracy, or a loss with
        ``higher_is_better=False``).
      candidate_bits: bit widths to try.
      where: which leaves (default: float leaves with ``ndim >= 2``).
      per_channel: per-output-channel scales.
      higher_is_better: the metric's direction.

    Returns:
      ``(baseline, {path: {bits: drop}})`` where ``drop = baseline - metric``
      (``metric - baseline`` for a loss): larger is worse.
    """
    cands = check_candidates(candidate_bits)
    base = float(metric_fn(params))
    sign = 1.0 if higher_is_better else -1.0
    out: dict[str, dict[int, float]] = {}
    for p in selected_paths(params, where):
        out[p] = {b: sign * (base - float(metric_fn(quantize_layers(
            params, {p: b}, per_channel=per_channel)))) for b in cands}
    return base, out


def _check_tables(drops: Table, sizes: Mapping[str, Mapping[int, int]]) -> list[str]:
    names = list(drops)
    if not names:
        raise ConfigError("mixed_precision: no layers to allocate")
    for p in names:
        if p not in sizes:
            raise ConfigError(f"mixed_precision.sizes: no sizes for layer {p!r}")
        if set(drops[p]) != set(sizes[p]) or not drops[p]:
            raise ConfigError(f"mixed_precision: layer {p!r} has drops for bits "
                              f"{sorted(drops[p])} but sizes for {sorted(sizes[p])}")
    return names


def min_size(sizes: Mapping[str, Mapping[int, int]]) -> int:
    """The smallest total over the layers (each at its smallest option)."""
    return int(sum(min(s.values()) for s in sizes.values()))


def _check_budget(budget: Any, sizes: Mapping[str, Mapping[int, int]]) -> int:
    lo = min_size(sizes)
    if isinstance(budget, bool) or not isinstance(budget, int | float | np.integer | np.floating) \
            or not math.isfinite(budget) or budget < lo:
        raise ConfigError(f"mixed_precision.budget: got {budget!r} bytes; allowed range "
                          f"[{lo}, inf) — the smallest possible size (every layer at its "
                          "fewest bits)")
    return int(math.floor(budget))


def allocate_greedy(drops: Table, sizes: Mapping[str, Mapping[int, int]],
                    budget: float) -> dict[str, int]:
    """Greedy allocation: start at the most bits, lower the cheapest step until it fits.

    Each step lowers one layer to its next smaller option, choosing the step
    with the least increase in predicted drop per byte saved.

    Raises:
      ConfigError: ``budget`` below the smallest possible size.
    """
    names = _check_tables(drops, sizes)
    b = _check_budget(budget, sizes)
    opts = {p: sorted(sizes[p], key=lambda k: sizes[p][k]) for p in names}
    pos = {p: len(opts[p]) - 1 for p in names}
    total = sum(sizes[p][opts[p][pos[p]]] for p in names)
    while total > b:
        best, best_rate = None, math.inf
        for p in names:
            if pos[p] == 0:
                continue
            cur, nxt = opts[p][pos[p]], opts[p][pos[p] - 1]
            saved = sizes[p][cur] - sizes[p][nxt]
            rate = (drops[p][nxt] - drops[p][cur]) / max(saved, 1e-12)
            if rate < best_rate:
                best, best_rate = p, rate
        if best is None:  # pragma: no cover - excluded by _check_budget
            break
        total -= sizes[best][opts[best][pos[best]]] - sizes[best][opts[best][pos[best] - 1]]
        pos[best] -= 1
    return {p: opts[p][pos[p]] for p in names}


def allocate_knapsack(drops: Table, sizes: Mapping[str, Mapping[int, int]], budget: float, *,
                      max_cells: int = 2_000_000) -> dict[str, int]:
    """Exact multiple-choice knapsack: one option per layer, min summed drop, size <= budget.

    Dynamic programming over bytes above the minimum size. When
    ``layers * (budget - min_size)`` exceeds ``max_cells``, sizes are counted
    in units of ``u`` bytes, each rounded **up** — the result always fits the
    budget but may then be slightly sub-optimal.

    Raises:
      ConfigError: ``budget`` below the smallest possible size.
    """
    names = _check_tables(drops, sizes)
    b = _check_budget(budget, sizes)
    base = {p: min(sizes[p].values()) for p in names}
    cap = b - sum(base.values())
    unit = max(1, math.ceil(len(names) * (cap + 1) / max_cells))
    cap_u = cap // unit
    inf = math.inf
    dp = np.full(cap_u + 1, inf)
    dp[0] = 0.0
    choices = []
    for p in names:
        opts = sorted(sizes[p])
        new = np.full(cap_u + 1, inf)
        arg = np.full(cap_u + 1, -1, np.int64)
        for j, bits in enumerate(opts):
            w = math.ceil((sizes[p][bits] - base[p]) / unit)
            if w > cap_u:
                continue
            cand = np.full(cap_u + 1, inf)
            cand[w:] = dp[:cap_u + 1 - w] + float(drops[p][bits])
            better = cand < new
            new[better], arg[better] = cand[better], j
        dp = new
        choices.append((opts, arg))
    c = int(np.argmin(dp))
    out: dict[str, int] = {}
    for p, (opts, arg) in zip(reversed(names), reversed(choices), strict=True):
        j = int(arg[c])
        out[p] = opts[j]
        c -= math.ceil((sizes[p][opts[j]] - base[p]) / unit)
    return {p: out[p] for p in names}


ALLOCATORS = {"greedy": allocate_greedy, "knapsack": allocate_knapsack}


def total(table: Mapping[str, Mapping[int, float]], bits: Mapping[str, int]) -> float:
    """Sum of ``table[path][bits[path]]`` (predicted drop or bytes of an allocation)."""
    return float(sum(table[p][b] for p, b in bits.items()))


def pareto_front(drops: Table, sizes: Mapping[str, Mapping[int, int]], *,
                 budgets: Sequence[float] | None = None, n_points: int = 12,
                 method: str = "knapsack", extra_bytes: int = 0,
                 measure: Callable[[dict[str, int]], float] | None = None,
                 ) -> list[dict[str, Any]]:
    """Allocations over a range of budgets, keeping the non-dominated ones.

    Args:
      drops, sizes: ``{path: {bits: value}}`` from :func:`sensitivity` and :func:`size_table`.
      budgets: bytes budgets for the quantized layers (default: ``n_points``
        evenly spaced from the smallest to the largest possible size).
      method: ``"knapsack"`` or ``"greedy"``.
      extra_bytes: bytes added to every point's ``bytes`` (the float leaves).
      measure: optional ``bits -> metric`` to record the measured value per point.

    Returns:
      Points sorted by size: ``{"budget", "bytes", "predicted_drop", "bits"[, "measured"]}``,
      each strictly better in predicted drop than every smaller one.
    """
    if method not in ALLOCATORS:
        raise ConfigError(f"mixed_precision.method: got {method!r}; allowed: "
                          f"{', '.join(ALLOCATORS)}")
    lo, hi = min_size(sizes), int(sum(max(s.values()) for s in sizes.values()))
    if budgets is None:
        budgets = np.linspace(lo, hi, max(2, n_points)).round().tolist()
    pts = []
    for bud in budgets:
        alloc = ALLOCATORS[method](drops, sizes, bud)
        pts.append({"budget": float(bud) + extra_bytes,
                    "bytes": int(total(sizes, alloc)) + extra_bytes,
                    "predicted_drop": total(drops, alloc), "bits": alloc})
    pts.sort(key=lambda d: (d["bytes"], d["predicted_drop"]))
    front, best = [], math.inf
    for d in pts:
        if d["predicted_drop"] < best - 1e-12:
            front.append(d)
            best = d["predicted_drop"]
    if measure is not None:
        for d in front:
            d["measured"] = float(measure(d["bits"]))
    return front


def write_pareto(points: Sequence[Mapping[str, Any]], out_dir: str | pathlib.Path,
                 stem: str = "pareto", *, title: str = "Mixed precision: size vs drop",
                 ) -> dict[str, pathlib.Path]:
    """Write the front as ``<stem>.csv``, ``<stem>.json`` and ``<stem>.png`` (matplotlib Agg)."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / f"{stem}.csv", "json": out / f"{stem}.json", "png": out / f"{stem}.png"}
    layer_names = sorted({p for d in points for p in d["bits"]})
    with paths["csv"].open("w", newline="") as f:
        w = csv.writer(f)
        has_m = any("measured" in d for d in points)
        w.writerow(["budget", "bytes", "predicted_drop", *(["measured"] if has_m else []),
                    *[f"bits[{p}]" for p in layer_names]])
        for d in points:
            w.writerow([d["budget"], d["bytes"], d["predicted_drop"],
                        *([d.get("measured", "")] if has_m else []),
                        *[d["bits"].get(p, "") for p in layer_names]])
    paths["json"].write_text(json.dumps(list(points), indent=2, default=float))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    xs = [d["bytes"] / 1024 for d in points]
    ax.plot(xs, [d["predicted_drop"] for d in points], "o-", label="predicted drop (sum)")
    if any("measured" in d for d in points):
        ax.plot(xs, [d.get("measured", np.nan) for d in points], "s--", label="measured drop")
    ax.set_xlabel("size (KiB)")
    ax.set_ylabel("drop")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(paths["png"], dpi=100)
    plt.close(fig)
    return paths
