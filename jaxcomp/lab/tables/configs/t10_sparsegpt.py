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
Expected: not yet run in full here (see docs/results/T10.md once it has been).
"""

import ml_collections

from jaxcomp.lab.tables.configs.gpt_base import get_config as gpt_config


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.name = "t10_sparsegpt"
    c.gpt = gpt_config()
    c.seeds = (0, 1)
    c.calib_windows = 128
    c.calib_batch = 16
    c.sparsity = 0.5
    c.damp = 0.01
    c.block_size = 128
    c.owl_lambda = 0.08
    c.quick = ml_collections.ConfigDict({"seeds": (0,), "calib_windows": 16, "calib_batch": 8})
    c.lock()
    return c
