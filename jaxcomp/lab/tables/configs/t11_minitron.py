"""T11 — Minitron (Muralidharan et al. 2024), LoRA (Hu et al. 2021), QLoRA (Dettmers et al.
2023) on the base byte GPT (``configs/gpt_base.py``: 4 layers, width 256, 4 heads, MLP 1024,
context 256, trained on the fortunes corpus, cached per seed — shared with T9/T10).

Structured pruning to about half the parameters, two ways with equal parameter counts
(within 0.2%):
* width: residual stream 256 -> 192 channels, heads 4 -> 3 (head dimension 64 kept), MLP
  neurons 1024 -> 660 in every block, chosen by activation importance on
  ``calib_windows`` training windows (Minitron) — or at random (``random_draws`` seeded
  draws, the control of claim c);
* depth: 4 -> 2 blocks, the two whose removal raises the calibration loss least.
Both pruned GPTs are then distilled from the original for ``distill.steps`` steps of
``distill.batch_size`` windows (logit KD, forward KL at temperature 1 — the Minitron
recipe), and the width architecture is trained from scratch with the same optimizer, data
stream and steps. QLoRA: every block linear of the base held in int4 (group 64, RTN)
and frozen, LoRA rank 8 (alpha 16) trained on the training split with cross-entropy;
the same LoRA on the fp32 base is a control row (how much is plain extra training).
Batches of 16 windows (240 distillation steps = 983K bytes; 150 QLoRA steps) keep the
full run within PAPERS.md's 30 minutes on 2 CPU cores, base training included.

Run:
    jaxcomp reproduce T11            # full mode (1 seed; trains/caches the base GPT as T9)
    jaxcomp reproduce T11 --quick    # smoke test: a tiny GPT, a few steps
Expected (full, about 16 minutes on 2 CPU cores with the base GPT cached, 26 without;
see docs/results/T11.md): width- and depth-pruned + distilled within about 0.01 bpb of
the base and of each other, the width architecture from scratch about 0.7 bpb worse;
QLoRA and the fp32 + LoRA control both below the base.
"""

import ml_collections

from jaxcomp.lab.tables.configs.common import gpt_calib_config


def get_config() -> ml_collections.ConfigDict:
    c = gpt_calib_config("t11_minitron")
    c.seeds = (0,)          # one seed: four training runs per seed fill the CPU budget
    c.width = ml_collections.ConfigDict({"width": 192, "num_heads": 3, "mlp_hidden": 660})
    c.depth_layers = 2
    c.depth_method = "loss"
    c.random_draws = 3
    c.distill = ml_collections.ConfigDict({
        "steps": 240, "batch_size": 16, "learning_rate": 1e-3, "warmup": 20,
        "weight_decay": 0.1, "clip": 1.0, "temperature": 1.0, "kd_weight": 1.0,
        "ce_weight": 0.0, "hidden_weight": 0.0})
    c.qlora = ml_collections.ConfigDict({
        "format": "int4", "group_size": 64, "rank": 8, "alpha": 16.0, "steps": 150,
        "batch_size": 16, "learning_rate": 1e-3, "warmup": 10, "weight_decay": 0.0,
        "clip": 1.0})
    c.quick.update({
        "random_draws": 2, "depth_layers": 1,
        "width": {"width": 48, "num_heads": 3, "mlp_hidden": 184},
        "distill": {"steps": 12, "batch_size": 8, "learning_rate": 1e-3, "warmup": 2,
                    "weight_decay": 0.1, "clip": 1.0, "temperature": 1.0, "kd_weight": 1.0,
                    "ce_weight": 0.0, "hidden_weight": 0.0},
        "qlora": {"format": "int4", "group_size": 16, "rank": 4, "alpha": 8.0, "steps": 8,
                  "batch_size": 8, "learning_rate": 1e-3, "warmup": 2, "weight_decay": 0.0,
                  "clip": 1.0}})
    c.lock()
    return c
