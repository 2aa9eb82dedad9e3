"""Pruning: scores, exact masks (layer-wise, global, ERK, N:M, blocks), schedules,
the pruning transform, an optax wrapper, dynamic sparse training, sparse storage, reports.

Example:
    >>> import jax.numpy as jnp
    >>> from jaxcomp import prune
    >>> prune.topk_mask(jnp.array([3., 1., 2.]), 1 / 3).tolist()
    [True, False, True]
"""

from jaxcomp.prune import channels, groups, lottery, sensitivity, surgery
from jaxcomp.prune.channels import channel_masks, channel_pruner, group_scores, unit_mask
from jaxcomp.prune.dst import dynamic_sparse, rigl, set_
from jaxcomp.prune.groups import DependencyGraph, dependency_groups
from jaxcomp.prune.lottery import iterative_magnitude_pruning, mask_transform
from jaxcomp.prune.masks import (
    apply_masks,
    block_mask,
    check_masks,
    erk_masks,
    erk_sparsities,
    global_masks,
    keep_largest,
    layerwise_masks,
    nm_mask,
    sparsity_of,
    topk_mask,
)
from jaxcomp.prune.optax_wrapper import (
    MaskedState,
    find_prune_state,
    get_masks,
    masked_optimizer,
    masked_updates,
)
from jaxcomp.prune.pruner import (
    magnitude,
    masks_of,
    movement,
    prune_once,
    pruner,
    random,
    snip,
    taylor,
)
from jaxcomp.prune.report import format_report, sparsity_report
from jaxcomp.prune.scores import SCORES, score, snip_scores
from jaxcomp.prune.select_k import order_keys, smallest_k, smallest_k_groups
from jaxcomp.prune.state_transform import pruning_optimizer, pruning_transform
from jaxcomp.prune.storage import (
    decode,
    decode_tree,
    encode_bitmask,
    encode_relative,
    encode_tree,
    nbytes,
    tree_nbytes,
)
from jaxcomp.prune.surgery import Shrunk, rebuild_linen, shrink


def __getattr__(name: str):
    """``jaxcomp.prune.transformer`` (structured GPT pruning) is imported on first use."""
    if name == "transformer":
        import importlib

        return importlib.import_module("jaxcomp.prune.transformer")
    raise AttributeError(f"module 'jaxcomp.prune' has no attribute {name!r}")


__all__ = [
    "DependencyGraph", "Shrunk", "channel_masks", "channel_pruner", "channels",
    "dependency_groups", "group_scores", "groups", "iterative_magnitude_pruning", "lottery",
    "mask_transform", "rebuild_linen", "sensitivity", "shrink", "surgery", "unit_mask",
    "MaskedState", "decode", "decode_tree", "dynamic_sparse", "encode_bitmask",
    "encode_relative", "encode_tree", "find_prune_state", "format_report", "get_masks",
    "masked_optimizer", "masked_updates", "nbytes", "pruning_optimizer", "pruning_transform",
    "rigl", "set_", "smallest_k_groups", "sparsity_report", "tree_nbytes",
    "SCORES", "apply_masks", "block_mask", "check_masks", "erk_masks", "erk_sparsities",
    "global_masks", "keep_largest", "layerwise_masks", "magnitude", "masks_of", "movement",
    "nm_mask", "order_keys", "prune_once", "pruner", "random", "score", "smallest_k", "snip",
    "snip_scores", "sparsity_of", "taylor", "topk_mask",
]
