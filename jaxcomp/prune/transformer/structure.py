"""The GPT's coupled channels as dependency groups, and the kept-index record.

Structured pruning of a transformer removes, together:

* a query head ``h`` of block ``i`` (group ``blocks/{i}/attn/heads``): columns
  ``h*hd … h*hd+hd-1`` of ``q``'s kernel (and bias) and the same rows of ``o``'s kernel;
* a key/value head (``blocks/{i}/attn/kv_heads``): those columns of ``k`` and ``v``;
* an MLP neuron (``blocks/{i}/mlp/neurons``): a column of ``up`` (and ``gate``) and
  their biases, a row of ``down``;
* a residual-stream channel (``channels``): a column of ``embed`` (the tied head) and
  ``pos``, every ``ln1``/``ln2``/``ln_f`` scale and bias entry, a row of every
  ``q``/``k``/``v``/``up``/``gate`` kernel and of the untied ``head``, a column of every
  ``o``/``down`` kernel and an entry of their biases;
* a block (``blocks``): its whole subtree (the others are renumbered).

The jaxpr analysis of :func:`jaxcomp.prune.groups.dependency_groups` finds the MLP
neuron groups of the GPT by itself but blocks the residual stream (LayerNorm reduces
over it) and the heads (softmax reduces over keys, a reshape splits the head axis), so
:func:`gpt_graph` states the GPT's groups directly, as the same
:class:`~jaxcomp.prune.groups.DependencyGraph` (head axes are the major factor of a
``(heads, head_dim)`` layout); the slicing and zeroing are
:mod:`jaxcomp.prune.surgery`'s (:func:`~jaxcomp.prune.surgery.slice_tree`,
:func:`~jaxcomp.prune.surgery.masked_params`). In these groups every slice the masked
model zeroes is a producer (role ``"out"``), ``o``'s rows included: a removed query
head's output is a mixture of its key/value head's values, cut at ``o``.

A *kept* record is JSON-able: ``{"blocks": [...], "channels": [...], "heads": {"i":
[...]}, "kv_heads": {"i": [...]}, "neurons": {"i": [...]}}`` with original indices
(layer keys are the original block numbers as strings).

Example:
    >>> from jaxcomp.prune.transformer.structure import full_kept, gpt_graph
    >>> cfg = dict(vocab_size=256, num_layers=1, width=8, num_heads=2, num_kv_heads=1,
    ...            head_dim=4, context=4, mlp="gelu", mlp_hidden=16, positions="learned",
    ...            tie_embeddings=True, bias=False, rope_base=1e4)
    >>> g = gpt_graph(cfg)
    >>> {n: gr.size for n, gr in g.groups.items()}  # doctest: +NORMALIZE_WHITESPACE
    {'channels': 8, 'blocks/0/attn/heads': 2, 'blocks/0/attn/kv_heads': 1,
     'blocks/0/mlp/neurons': 16}
    >>> [(m.path, m.axis, m.role) for m in g.groups["blocks/0/attn/heads"].members]
    [('blocks/0/attn/o/kernel', 0, 'out'), ('blocks/0/attn/q/kernel', 1, 'out')]
    >>> full_kept(cfg)["heads"]
    {'0': [0, 1]}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxcomp.core.errors import ConfigError
from jaxcomp.models.gpt_target import expected_shapes
from jaxcomp.prune import surgery
from jaxcomp.prune.groups import DependencyGraph, Group, Member

KINDS = ("blocks", "channels", "heads", "kv_heads", "neurons")
PER_LAYER = {"heads": "attn/heads", "kv_heads": "attn/kv_heads", "neurons": "mlp/neurons"}


def _members(cfg: Mapping[str, Any]) -> list[tuple[str, str, int, str, tuple]]:
    """(group, path, axis, role, layout) of every grouped axis."""
    d, h, k, hd, f = (cfg["width"], cfg["num_heads"], cfg["num_kv_heads"], cfg["head_dim"],
                      cfg["mlp_hidden"])
    ch = (("channels", d),)
    out = [("channels", "embed/embedding", 1, "out", ch), ("channels", "pos/embedding", 1,
                                                           "out", ch)]
    for i in range(cfg["num_layers"]):
        b = f"blocks/{i}/"
        heads, kvh = ((b + "attn/heads", h), (None, hd)), ((b + "attn/kv_heads", k), (None, hd))
        neu = ((b + "mlp/neurons", f),)
        for ln in ("ln1", "ln2"):
            out += [("channels", f"{b}{ln}/{p}", 0, "out", ch) for p in ("scale", "bias")]
        out += [("channels", f"{b}attn/{n}/kernel", 0, "in", ch) for n in "qkv"]
        out += [("channels", f"{b}mlp/{n}/kernel", 0, "in", ch) for n in ("up", "gate")]
        for n in ("attn/o", "mlp/down"):
            out += [("channels", f"{b}{n}/kernel", 1, "out", ch),
                    ("channels", f"{b}{n}/bias", 0, "out", ch)]
        out += [(heads[0][0], b + "attn/q/kernel", 1, "out", heads),
                (heads[0][0], b + "attn/q/bias", 0, "out", heads),
                (heads[0][0], b + "attn/o/kernel", 0, "out", heads)]
        for n in "kv":
            out += [(kvh[0][0], f"{b}attn/{n}/kernel", 1, "out", kvh),
                    (kvh[0][0], f"{b}attn/{n}/bias", 0, "out", kvh)]
        for n in ("up", "gate"):
            out += [(neu[0][0], f"{b}mlp/{n}/kernel", 1, "out", neu),
                    (neu[0][0], f"{b}mlp/{n}/bias", 0, "out", neu)]
        out.append((neu[0][0], b + "mlp/down/kernel", 0, "in", neu))
    out += [("channels", f"ln_f/{p}", 0, "out", ch) for p in ("scale", "bias")]
    out.append(("channels", "head/kernel", 0, "in", ch))
    return out


def gpt_graph(cfg: Mapping[str, Any]) -> DependencyGraph:
    """The GPT's channel groups (see the module docstring) for a keyword config."""
    shapes = expected_shapes(dict(cfg))
    members: dict[str, list[Member]] = {}
    layouts = {("params", p): [((None, n),) for n in s] for p, s in shapes.items()}
    for g, path, axis, role, layout in _members(cfg):
        if path not in shapes:       # no bias / gate / pos / untied head in this config
            continue
        layouts[("params", path)][axis] = layout
        members.setdefault(g, []).append(Member("params", path, axis, role, layout, 0))
    groups = {g: Group(g, ms[0].factors[0][1], tuple(sorted(ms, key=lambda m: (m.path, m.axis))))
              for g, ms in members.items()}
    return DependencyGraph(groups, {k: tuple(v) for k, v in layouts.items()},
                           {("params", p): s for p, s in shapes.items()})


def full_kept(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The kept record that keeps everything."""
    rng = lambda n: list(range(n))  # noqa: E731
    layers = [str(i) for i in range(cfg["num_layers"])]
    return {"blocks": rng(cfg["num_layers"]), "channels": rng(cfg["width"]),
            "heads": {i: rng(cfg["num_heads"]) for i in layers},
            "kv_heads": {i: rng(cfg["num_kv_heads"]) for i in layers},
            "neurons": {i: rng(cfg["mlp_hidden"]) for i in layers}}


def _sorted_unique(v: Any, size: int, what: str) -> list[int]:
    a = np.asarray(v)
    if a.ndim != 1 or not (a.size == 0 or np.issubdtype(a.dtype, np.integer)):
        raise ConfigError(f"{what}: got {v!r}; expected a list of integer indices")
    idx = sorted(set(int(x) for x in a))
    if not idx:
        raise ConfigError(f"{what}: keeps nothing; at least one index of 0..{size - 1} must "
                          "remain")
    if idx[0] < 0 or idx[-1] >= size:
        raise ConfigError(f"{what}: indices {idx[0]}..{idx[-1]}; allowed 0..{size - 1}")
    return idx


def check_kept(cfg: Mapping[str, Any], kept: Mapping[str, Any]) -> dict[str, Any]:
    """A validated, normalized copy of a kept record (missing kinds keep everything).

    ConfigError for unknown kinds or layers, indices out of range, query heads whose
    key/value head is removed, or layers that keep different numbers of heads, key/value
    heads or neurons (the GPT has one size for all blocks)."""
    if not isinstance(kept, Mapping):
        raise ConfigError(f"kept: got {type(kept).__name__}; expected a dict with keys {KINDS}")
    unknown = sorted(set(kept) - set(KINDS))
    if unknown:
        raise ConfigError(f"kept: unknown keys {unknown}; allowed {list(KINDS)}")
    full = full_kept(cfg)
    out = {"blocks": _sorted_unique(kept.get("blocks", full["blocks"]), cfg["num_layers"],
                                    "kept['blocks']"),
           "channels": _sorted_unique(kept.get("channels", full["channels"]), cfg["width"],
                                      "kept['channels']")}
    sizes = {"heads": cfg["num_heads"], "kv_heads": cfg["num_kv_heads"],
             "neurons": cfg["mlp_hidden"]}
    group = cfg["num_heads"] // cfg["num_kv_heads"]
    for kind, size in sizes.items():
        given = {str(k): v for k, v in kept.get(kind, {}).items()}
        bad = sorted(set(given) - set(full[kind]))
        if bad:
            raise ConfigError(f"kept[{kind!r}]: unknown layers {bad}; the model has layers "
                              f"0..{cfg['num_layers'] - 1}")
        out[kind] = {i: _sorted_unique(given.get(i, full[kind][i]), size,
                                       f"kept[{kind!r}][{i!r}]") for i in full[kind]}
    for i in map(str, out["blocks"]):
        orphans = [h for h in out["heads"][i] if h // group not in out["kv_heads"][i]]
        per = [sum(h // group == k for h in out["heads"][i]) for k in out["kv_heads"][i]]
        if orphans or len(set(per)) != 1:
            raise ConfigError(f"kept['heads'][{i!r}]: {out['heads'][i]} with key/value heads "
                              f"{out['kv_heads'][i]}: every kept query head's group (head // "
                              f"{group}) must be kept and each kept group must keep the same "
                              "number of query heads")
    for kind in ("heads", "kv_heads", "neurons"):
        counts = {len(out[kind][str(i)]) for i in out["blocks"]}
        if len(counts) != 1:
            raise ConfigError(f"kept[{kind!r}]: the kept blocks keep {sorted(counts)} "
                              f"{kind}; all blocks of a GPT must keep the same number")
    return out


def keep_of(kept: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """``{group name: kept indices}`` of a (checked) kept record, for the surgery helpers."""
    keep = {"channels": np.asarray(kept["channels"])}
    for kind, suffix in PER_LAYER.items():
        keep.update({f"blocks/{i}/{suffix}": np.asarray(v) for i, v in kept[kind].items()})
    return keep


def new_config(cfg: Mapping[str, Any], kept: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword config of the GPT that keeps ``kept`` (a checked record)."""
    first = str(kept["blocks"][0])
    return {**cfg, "num_layers": len(kept["blocks"]), "width": len(kept["channels"]),
            "num_heads": len(kept["heads"][first]), "num_kv_heads": len(kept["kv_heads"][first]),
            "mlp_hidden": len(kept["neurons"][first])}


def slice_params(cfg: Mapping[str, Any], params: dict, kept: Mapping[str, Any]) -> dict:
    """The smaller pure params: every group member sliced, removed blocks dropped and the
    rest renumbered 0, 1, …"""
    small = surgery.slice_tree(params, "params", gpt_graph(cfg), keep_of(kept))
    return {**small, "blocks": {n: small["blocks"][i] for n, i in enumerate(kept["blocks"])}}


def zeroed_params(cfg: Mapping[str, Any], params: dict, kept: Mapping[str, Any]) -> dict:
    """Pure params with every removed slice zeroed and every removed block's ``o`` and
    ``down`` (kernel and bias) zeroed, which makes that block the identity."""
    graph = gpt_graph(cfg)
    keep = {g: k for g, k in keep_of(kept).items() if len(k) < graph.groups[g].size}
    out = surgery.masked_params(params, graph, keep) if keep else params
    dropped = set(range(cfg["num_layers"])) - set(kept["blocks"])
    blocks = dict(out["blocks"])
    for i in dropped:
        b = blocks[i]
        blocks[i] = {**b, "attn": {**b["attn"], "o": {k: v * 0 for k, v in b["attn"]["o"].items()}},
                     "mlp": {**b["mlp"], "down": {k: v * 0 for k, v in b["mlp"]["down"].items()}}}
    return {**out, "blocks": blocks}


__all__ = ["KINDS", "check_kept", "full_kept", "gpt_graph", "keep_of", "new_config",
           "slice_params", "zeroed_params"]
