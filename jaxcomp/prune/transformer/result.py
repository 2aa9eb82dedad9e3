"""The physically pruned GPT: :class:`Pruned` and :func:`apply_kept`.

Example:
    >>> import jax
    >>> from jaxcomp.models import get_model
    >>> model = get_model("gpt", input_shape=(8,), num_layers=2, width=16, num_heads=2,
    ...                   mlp_hidden=32)
    >>> params, _ = model.init(jax.random.key(0), None)
    >>> small = apply_kept(model, params, {"blocks": [1], "neurons": {"1": list(range(8))}})
    >>> small.config["num_layers"], small.config["mlp_hidden"], small.params_after
    (1, 8, 5600)
    >>> small.module().blocks[0].mlp.up.kernel.shape
    (16, 8)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from flax import nnx

from jaxcomp.flax.model import Model
from jaxcomp.models.gpt import GPT, as_module
from jaxcomp.models.gpt_target import Target, abstract_params, count, resolve
from jaxcomp.prune.transformer import structure as st


class Pruned(NamedTuple):
    """A smaller GPT: ``model`` (``get_model("gpt", ...)`` of ``config``), its ``params``
    (an ``nnx.State``) and ``model_state``, the keyword ``config``, the ``kept`` record
    (JSON-able original indices, :mod:`~jaxcomp.prune.transformer.structure`) and the
    parameter counts before and after."""

    model: Model
    params: Any
    model_state: Any
    config: dict[str, Any]
    kept: dict[str, Any]
    params_before: int
    params_after: int

    def module(self) -> GPT:
        """The smaller model as an NNX :class:`~jaxcomp.models.gpt.GPT` module carrying
        ``params`` (trainable further, usable with :func:`~jaxcomp.models.gpt.generate`)."""
        return as_module(self.model, self.params, self.model_state)


def from_pure(config: Mapping[str, Any], pure: dict, kept: Mapping[str, Any],
              before: int) -> Pruned:
    """A :class:`Pruned` of ``config`` carrying the pure params ``pure``."""
    model, params, ms = abstract_params(dict(config))
    nnx.replace_by_pure_dict(params, pure)
    return Pruned(model, params, ms, dict(config), dict(kept), before, count(params))


def finish(t: Target, kept: Mapping[str, Any]) -> Pruned:
    """Slice ``t``'s params to a checked kept record and build the smaller model."""
    small = st.slice_params(t.config, t.params, kept)
    return from_pure(st.new_config(t.config, kept), small, kept, count(t.params))


def apply_kept(model: Any, params: Any, kept: Mapping[str, Any]) -> Pruned:
    """Remove everything a kept record leaves out (kinds not given keep everything).

    Args:
      model, params: the GPT (its ``Model`` and params, or an NNX GPT module and None).
      kept: ``{"blocks", "channels", "heads", "kv_heads", "neurons"}`` kept indices
        (:mod:`~jaxcomp.prune.transformer.structure`), e.g. another
        :attr:`Pruned.kept` of the same model.
    """
    t = resolve(model, params, "apply_kept.model")
    return finish(t, st.check_kept(t.config, kept))


__all__ = ["Pruned", "apply_kept", "finish", "from_pure"]
