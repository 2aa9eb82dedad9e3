"""The source text of tiny experiment config files that the CLI tests write to disk.

Example:
    >>> src = tiny_config_source(features=8, epochs=1, sweep={"seed": [0, 1]})
    >>> "def get_sweep" in src and "c.model.features = (8,)" in src
    True
"""

from __future__ import annotations

from typing import Any


def tiny_config_source(*, features: int = 16, epochs: int = 1, learning_rate: float | None = None,
                       checkpoint: bool = False, sweep: dict[str, list[Any]] | None = None,
                       zipped: bool = False, extra: tuple[str, ...] = ()) -> str:
    """A config file with ``get_config()`` (a one-hidden-layer MLP on synthetic data,
    batch 64; ``extra`` assignments such as ``'c.prune.method = "magnitude"'`` after
    it) and, with ``sweep``, a ``get_sweep()`` that is the product of its lists (the
    zip with ``zipped``)."""
    lines = ["from jaxcomp.experiment import base_config",
             "from jaxcomp.sweep.grid import product, zip_", "", "",
             "def get_config():",
             "    c = base_config()",
             '    c.data.name = "synthetic"',
             '    c.model.name = "mlp"',
             "    with c.unlocked():",
             f"        c.model.features = ({features},)",
             f"    c.train.epochs = {epochs}",
             "    c.train.batch_size = 64"]
    if learning_rate is not None:
        lines.append(f"    c.train.learning_rate = {learning_rate!r}")
    if checkpoint:
        lines.append("    c.train.checkpoint = True")
    lines += [f"    {line}" for line in extra]
    lines.append("    return c")
    if sweep is not None:
        lines += ["", "", "def get_sweep():",
                  f"    return {'zip_' if zipped else 'product'}({sweep!r})"]
    return "\n".join(lines) + "\n"
