"""One-shot LLM pruning without retraining: magnitude, Wanda, SparseGPT, OWL
layer sparsities, run block by block through the calibration pass, and sparse
export with real bytes (N:M packed values + indices, bitmask / CSR).

* :mod:`~jaxcomp.prune.oneshot.layer` — per-layer :func:`magnitude`, :func:`wanda`,
  :func:`sparsegpt` (kernels ``(in, out)``, unstructured or N:M);
* :mod:`~jaxcomp.prune.oneshot.driver` — :func:`prune_blocks` (sequential: the
  pruned earlier blocks feed the later blocks' calibration);
* :mod:`~jaxcomp.prune.oneshot.owl` — :func:`owl_sparsities`;
* :mod:`~jaxcomp.prune.oneshot.export` — :func:`export_sparse` /
  :func:`import_sparse` / :func:`sparse_nbytes`, :func:`encode_nm` / :func:`decode_nm`.

Example:
    >>> import jax, jax.numpy as jnp, numpy as np
    >>> from jaxcomp.prune import oneshot
    >>> from jaxcomp.quant.calib import hessian_of
    >>> x = jax.random.normal(jax.random.key(0), (256, 32))
    >>> w = jax.random.normal(jax.random.key(1), (32, 8))
    >>> ws, keep = oneshot.sparsegpt(w, hessian_of(x), nm="2:4")
    >>> e = oneshot.encode_nm(np.asarray(ws), 2, 4)
    >>> bool((oneshot.decode_nm(e) == np.asarray(ws)).all()), oneshot.nm_nbytes(e)
    (True, 544)
"""

from jaxcomp.prune.oneshot.driver import METHODS, PruneResult, check_calib, prune_blocks
from jaxcomp.prune.oneshot.export import (
    decode_nm,
    encode_nm,
    export_sparse,
    import_sparse,
    nm_nbytes,
    sparse_nbytes,
)
from jaxcomp.prune.oneshot.layer import check_pattern, magnitude, parse_nm, sparsegpt, wanda
from jaxcomp.prune.oneshot.owl import outlier_ratios, owl_from_ratios, owl_sparsities

__all__ = [
    "METHODS", "PruneResult", "check_calib", "check_pattern", "decode_nm", "encode_nm",
    "export_sparse", "import_sparse", "magnitude", "nm_nbytes", "outlier_ratios",
    "owl_from_ratios", "owl_sparsities", "parse_nm", "prune_blocks", "sparse_nbytes",
    "sparsegpt", "wanda",
]
