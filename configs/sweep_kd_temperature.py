"""KD temperature sweep (Hinton et al. 2015): a small 30-30 MLP student distilled from a
2x1200 MLP teacher on Fashion-MNIST, T in {1, 2, 4, 8, 20} x 3 seeds, alpha = 0.9 (the
soft term is multiplied by T^2 inside the loss).

Run:
    jaxcomp sweep configs/sweep_kd_temperature.py --out runs/kd_t
    jaxcomp report runs/kd_t
The teacher is trained once (memoized) and its logits cached; temperature and seed are
vector keys, so all 15 student runs train in one vmapped program (1 compile).
Add a plain-student baseline with `--set distill.alpha=0.0` into another --out directory.
Expected (PAPERS.md T6c: the paper's best T for tiny students is 2.5-4): the teacher
reaches about 0.89; student accuracy differences between temperatures are small (a few
tenths of a point, comparable to the seed std) with the best T among 2-8. About 4-6
minutes on 2 CPU cores, most of it the teacher.
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
