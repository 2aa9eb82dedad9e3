"""Saving and restoring a pruned GPT: variables as an orbax checkpoint, the GPT's keyword
config and the kept indices as ``structure.json`` (the layout of
:func:`jaxcomp.prune.rebuild.save_shrunk`), so a fresh process rebuilds the smaller
model with ``get_model("gpt", ...)`` and needs neither the full-size params nor code
that knows the pruning.

Example:
    >>> import jax, tempfile, numpy as np
    >>> from jaxcomp.models import get_model
    >>> from jaxcomp.prune import transformer as tp
    >>> model = get_model("gpt", input_shape=(8,), num_layers=2, width=16, num_heads=2)
    >>> params, _ = model.init(jax.random.key(0), None)
    >>> small = tp.prune_depth(model, params, None, num_layers=1, method="last")
    >>> d = save_pruned(tempfile.mkdtemp(), small)
    >>> back = load_pruned(d)
    >>> back.config == small.config, back.kept == small.kept
    (True, True)
    >>> x = np.arange(8)[None]
    >>> bool(np.array_equal(back.module()(x), small.module()(x)))
    True
"""

from __future__ import annotations

import json
import os

from jaxcomp.core.errors import ConfigError
from jaxcomp.models.gpt_target import abstract_params
from jaxcomp.prune.rebuild import restore_variables, save_shrunk
from jaxcomp.prune.transformer.result import Pruned

FORMAT = "jaxcomp.transformer_prune/1"


def record_of(pruned: Pruned) -> dict:
    """The JSON record of a :class:`~jaxcomp.prune.transformer.result.Pruned`."""
    return {"format": FORMAT, "config": pruned.config, "kept": pruned.kept,
            "params_before": pruned.params_before, "params_after": pruned.params_after}


def save_pruned(directory: str, pruned: Pruned) -> str:
    """Write ``pruned``'s variables (orbax) and record (JSON) to ``directory``; returns
    its absolute path."""
    if not isinstance(pruned, Pruned):
        raise ConfigError(f"save_pruned.pruned: got {type(pruned).__name__}; expected the "
                          "Pruned of prune_width / prune_depth / apply_kept")
    return save_shrunk(directory, pruned, record=record_of(pruned))


def load_pruned(directory: str) -> Pruned:
    """The :class:`~jaxcomp.prune.transformer.result.Pruned` that :func:`save_pruned`
    wrote (its model rebuilt from the recorded config)."""
    path = os.path.join(directory, "structure.json")
    if not os.path.exists(path):
        raise ConfigError(f"load_pruned.directory: {directory!r} has no structure.json; "
                          "expected a directory written by save_pruned")
    with open(path) as f:
        rec = json.load(f)
    if rec.get("format") != FORMAT:
        raise ConfigError(f"load_pruned: {path} has format {rec.get('format')!r}; expected "
                          f"{FORMAT!r}")
    model, params, ms = abstract_params(rec["config"])
    params, ms = restore_variables(directory, params, ms)
    return Pruned(model, params, ms, rec["config"], rec["kept"], rec["params_before"],
                  rec["params_after"])


__all__ = ["FORMAT", "load_pruned", "record_of", "save_pruned"]
