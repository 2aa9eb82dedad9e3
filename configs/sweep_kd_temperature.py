"""KD temperature sweep (Hinton et al. 2015): a small 30-30 MLP student distilled from a
2x1200 MLP teacher on Fashion-MNIST, T in {1, 2, 4, 8, 20} x 3 seeds, alpha = 0.9 (the
soft term is multiplied by T^2 inside the loss).

Run:
    jaxcomp sweep configs/sweep_kd_temperature.py --out runs/kd_t
    jaxcomp report runs/kd_t
The teacher is trained once (memoized) and its logits cached; temperature and seed are
vector keys, so all 15 student runs train in one vmapped program (1 compile).
Add a plain-student baseline with `--set distill.alpha=0.0` into another --out directory.
Expected (PAPERS.md T6c: the paper's best T for tiny students is 2.5-4). Measured
2026-11-28 (2 idle CPU cores, 141 s in all): teacher 0.8795 (5
epochs); student test accuracy by T (mean ± std, 3 seeds): T=1 0.8551 ± 0.0015, T=2
0.8480 ± 0.0044, T=4 0.8390 ± 0.0031, T=8 0.8249 ± 0.0044, T=20 0.8180 ± 0.0043 — the
best T here is 1 and accuracy falls as T grows, unlike the paper: with a 5-epoch
teacher that is itself weak (see docs/results/T6.md), softer targets carry more of
its errors.
"""

from jaxcomp.experiment import base_config
from jaxcomp.sweep.grid import product


def get_config():
    c = base_config()
    c.name = "sweep_kd_temperature"
    c.data.name = "fashion_mnist"
    c.model.name = "mlp"
    with c.unlocked():
        c.model.features = (30, 30)
    c.train.epochs = 5
    c.train.batch_size = 128
    c.train.learning_rate = 1e-3
    c.distill.method = "kd"
    c.distill.alpha = 0.9
    c.distill.teacher_features = (1200, 1200)
    c.distill.teacher_epochs = 5
    return c


def get_sweep():
    return product({"distill.temperature": [1.0, 2.0, 4.0, 8.0, 20.0]}, {"seed": [0, 1, 2]})
