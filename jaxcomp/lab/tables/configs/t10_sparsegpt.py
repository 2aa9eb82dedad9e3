"""T10 — SparseGPT (Frantar & Alistarh 2023) and Wanda (Sun et al. 2023): one-shot pruning
without retraining of the base byte GPT (``configs/gpt_base.py``: 4 layers, width 256,
context 256, trained on the fortunes corpus, cached per seed — shared with T9/T11).

Every method prunes the attention (q, k, v, o) and MLP (up, down) linears only, block by
block through the calibration pass (:func:`jaxcomp.prune.oneshot.prune_blocks`: the pruned
earlier blocks feed the later blocks' statistics) on ``calib_windows`` random training
windows: magnitude (layer-wise), Wanda (per output), SparseGPT (block 128, damp 0.01) at
50% unstructured and at 2:4; an extra, non-gating row gives Wanda at 50% with OWL
layer sparsities (λ = ``owl_lambda``). Metric: valid bits per byte, mean over ``seeds``;
pruning time = seconds in the per-layer pruning functions (statistics pass excluded,
compilation included), mean over seeds.

Run:
    jaxcomp reproduce T10            # full mode (2 seeds; trains/caches 2 GPTs, as T9)
    jaxcomp reproduce T10 --quick    # smoke test: one seed, a tiny GPT, 16 windows
Expected (full, about 4 minutes on 2 CPU cores with the base GPTs cached; see
docs/results/T10.md): dense about 2.90 bpb; 50%: SparseGPT +0.011, Wanda and magnitude
about +0.055; 2:4: SparseGPT +0.03, Wanda +0.18, magnitude +0.21; Wanda about 0.1 of
SparseGPT's pruning time.
"""

import ml_collections

from jaxcomp.lab.tables.configs.common import gpt_calib_config


def get_config() -> ml_collections.ConfigDict:
    c = gpt_calib_config("t10_sparsegpt")
    c.sparsity = 0.5            # the unstructured rows (the others are 2:4)
    c.damp = 0.01               # SparseGPT: damp * mean(diag H) added to the diagonal of H
    c.block_size = 128          # SparseGPT: inputs per lazy-update block (one mask each)
    c.owl_lambda = 0.08         # OWL: block sparsities within sparsity ± owl_lambda
    c.lock()
    return c
