"""Tensor decomposition: SVD, Tucker-2, CP and TT-matrix factorizations of
kernels, rank selection (energy, EVBMF, global budgets), factorized layers
(linen and NNX), model conversion, accounting and a decompose-then-reconstruct
transform. Algorithms are jittable (fixed iteration counts, float32) and tested
against tensorly.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp import decompose as dc
    >>> k = jax.random.normal(jax.random.key(0), (3, 3, 8, 8))
    >>> t = dc.tucker2(k, (4, 4))
    >>> t.core.shape
    (3, 3, 4, 4)
"""

from jaxcomp.decompose.accounting import (
    apply_choice,
    choose_forms,
    layer_cost,
    layer_shapes,
    layer_timings,
    ledger,
    time_fn,
    time_interleaved,
    totals,
)
from jaxcomp.decompose.blas import one_blas_thread
from jaxcomp.decompose.budget import Candidates, allocate, svd_candidates, tucker2_candidates
from jaxcomp.decompose.convert import (
    METHODS,
    decompose_kernel,
    normalize_spec,
    reconstruct_kernel,
)
from jaxcomp.decompose.cp import CP, cp_als, cp_reconstruct
from jaxcomp.decompose.factorize import (
    Factorized,
    factorize,
    factorize_params,
    factorized_model,
    reconstruct_params,
)
from jaxcomp.decompose.layers import (
    CPConv,
    LowRankDense,
    TuckerConv,
    cp_conv,
    lowrank_dense,
    tucker_conv,
)
from jaxcomp.decompose.nnx_layers import factorize_nnx
from jaxcomp.decompose.rank import (
    energy_rank,
    energy_tucker2_ranks,
    evbmf,
    ratio_rank,
    vbmf_tucker2_ranks,
)
from jaxcomp.decompose.svd import (
    SVD,
    lowrank_factors,
    randomized_svd,
    svd_reconstruct,
    truncated_svd,
)
from jaxcomp.decompose.transform import decompose_reconstruct
from jaxcomp.decompose.tt import tt_matrix, tt_matrix_reconstruct
from jaxcomp.decompose.tucker import Tucker2, relative_error, tucker2, tucker2_reconstruct

__all__ = [
    "CP", "METHODS", "SVD", "CPConv", "Candidates", "Factorized", "LowRankDense", "Tucker2",
    "factorize_nnx",
    "TuckerConv", "allocate", "apply_choice", "choose_forms", "cp_als", "cp_conv",
    "cp_reconstruct", "decompose_kernel", "decompose_reconstruct", "energy_rank",
    "energy_tucker2_ranks", "evbmf", "factorize", "factorize_params", "factorized_model",
    "layer_cost", "layer_shapes", "layer_timings", "ledger", "lowrank_dense",
    "lowrank_factors", "normalize_spec", "one_blas_thread", "randomized_svd", "ratio_rank",
    "reconstruct_kernel", "reconstruct_params", "relative_error", "svd_candidates",
    "svd_reconstruct", "time_fn", "time_interleaved", "totals", "truncated_svd",
    "tt_matrix", "tt_matrix_reconstruct", "tucker2", "tucker2_candidates",
    "tucker2_reconstruct", "tucker_conv", "vbmf_tucker2_ranks",
]
