"""Knowledge distillation on Fashion-MNIST: LeNet-300-100 student, 2×1200 MLP
teacher (dropout 0.5, ±2 px jitter), Hinton KD at T = 4, α = 0.9.

Run:
    jaxcomp train configs/distill_kd_fmnist.py
    jaxcomp train configs/distill_kd_fmnist.py --set distill.method=dkd
    jaxcomp train configs/distill_kd_fmnist.py --set distill.temperature=20.0
Sweeps over distill.temperature / distill.alpha (the family's VECTOR_KEYS) reuse
one compiled step and one teacher (trained once, memoized in-process).

Expected (2 CPU cores): teacher ≈ 0.89-0.90 after 10 epochs (~1-2 min); the
student ≈ 0.88-0.89 after 10 epochs — a few tenths of a point above a plain
LeNet-300-100 (configs/lenet300_fmnist.py), with a lower test NLL. The
teacher's logits are cached (distill.cache_teacher), so student epochs cost
about the same as plain training (with fit's per-step loop, not lax.scan).
"""

from jaxcomp.experiment import base_config


def get_config():
    c = base_config()
    c.name = "distill_kd_fmnist"
    c.data.name = "fashion_mnist"
    c.model.name = "lenet300"
    c.train.epochs = 10
    c.train.batch_size = 128
    c.train.learning_rate = 1e-3
    d = c.distill
    d.method = "kd"
    d.temperature = 4.0
    d.alpha = 0.9
    d.teacher_model = "mlp"
    d.teacher_features = (1200, 1200)
    d.teacher_dropout = 0.5
    d.teacher_jitter = 2
    d.teacher_epochs = 10
    d.cache_teacher = True
    return c
