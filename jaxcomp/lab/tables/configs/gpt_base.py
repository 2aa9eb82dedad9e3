"""The base GPT shared by the transformer tables T9-T11 (trained once per seed and cached
by :func:`jaxcomp.lab.tables.gpt_base.trained_gpt`).

Full: 4 layers, width 256, 4 heads, context 256, GELU MLP, learned positions, tied
byte embedding (3.2M parameters), AdamW (peak 2e-3, 50 warm-up steps, cosine to
10%, weight decay 0.1 on kernels, clip 1.0), 500 steps of batch 16 windows of 256 bytes
(2.05M training bytes), on the fortunes corpus (90/10 contiguous split); the tables'
bpb is on the first 384 valid windows (98K bytes, about 40% of the split; the same
windows for every row). Quick: 2 layers, width 64, context 64, 150 steps of batch 16
(a smoke test).

Why 500 steps: ``../shared/PAPERS.md`` gives each transformer table 30 minutes on 2 CPU
cores including the base training, and T9/T10 train two seeds. A step of batch 16 costs
about 1.1–1.4 s here (2.1 s at batch 32): one seed of 500 steps took 535–680 s in the first
full runs, and T9 as a whole 27 minutes. The model is undertrained (a 3.2M-parameter model could use
far more than 2M bytes); the tables report its bpb beside the unigram and bigram baselines.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.model = ml_collections.ConfigDict({
        "num_layers": 4, "width": 256, "num_heads": 4, "context": 256, "mlp": "gelu",
        "positions": "learned"})
    c.train = ml_collections.ConfigDict({
        "steps": 500, "batch_size": 16, "learning_rate": 2e-3, "warmup": 50,
        "weight_decay": 0.1, "clip": 1.0, "eval_every": 250, "max_eval_windows": 128})
    c.eval_windows = 384        # valid windows for the tables' bpb (0: the whole split)
    c.quick = ml_collections.ConfigDict({
        "model": {"num_layers": 2, "width": 64, "num_heads": 4, "context": 64,
                  "mlp": "gelu", "positions": "learned"},
        "train": {"steps": 150, "batch_size": 16, "learning_rate": 3e-3, "warmup": 10,
                  "weight_decay": 0.1, "clip": 1.0, "eval_every": 150,
                  "max_eval_windows": 64},
        "eval_windows": 128})
    c.lock()
    return c
