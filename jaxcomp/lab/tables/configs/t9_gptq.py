"""T9 — GPTQ (Frantar et al. 2022), AWQ (Lin et al. 2023), SmoothQuant (Xiao et al. 2023),
QuaRot (Ashkboos et al. 2024) on the base byte GPT (``configs/gpt_base.py``: 4 layers,
width 256, context 256, trained on the fortunes corpus, cached per seed).

Every method quantizes the attention (q, k, v, o) and MLP (up, down) linears only,
through the block-by-block calibration driver (``jaxcomp.quant.calib``) on
``calib_windows`` random training windows (batches of ``calib_batch``): RTN / GPTQ / AWQ
at W3 and W4 with group 128 (asymmetric); W8A8 with per-channel int8 weights and static
per-tensor int8 activations, naive vs SmoothQuant (alpha 0.5); W4A4 (GPTQ W4 g128
weights, per-token 4-bit activations on every linear input) with and without a Hadamard
rotation; int8 keys/values (fake-quantized in the blocks, per token and head). Metric:
valid bits per byte; claims on the mean over ``seeds``.

Run:
    jaxcomp reproduce T9            # full mode (2 seeds, trains/caches 2 GPTs)
    jaxcomp reproduce T9 --quick    # smoke test: one seed, a tiny GPT, 16 windows
Expected (full, about 27 minutes on 2 CPU cores with both base GPTs trained; see
docs/results/T9.md): fp32 about 2.90 bpb; GPTQ W4 within 0.001 of it, RTN W3 +0.016,
GPTQ W3 +0.004; W4A4 +0.13 without rotation, +0.03 with it; KV int8 +0.00002.
"""

import ml_collections

from jaxcomp.lab.tables.configs.common import gpt_calib_config


def get_config() -> ml_collections.ConfigDict:
    c = gpt_calib_config("t9_gptq")
    c.group_size = 128
    c.smooth_alpha = 0.5
    c.rotation_seed = 0
    c.quick.group_size = 32
    c.lock()
    return c
