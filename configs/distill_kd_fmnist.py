"""Knowledge distillation on Fashion-MNIST: LeNet-300-100 student, 2×1200 MLP
teacher (dropout 0.5, ±2 px jitter), Hinton KD at T = 4, α = 0.9.

Run:
    jaxcomp train configs/distill_kd_fmnist.py
    jaxcomp train configs/distill_kd_fmnist.py --set distill.method=dkd
    jaxcomp train configs/distill_kd_fmnist.py --set distill.temperature=20.0
Sweeps over distill.temperature / distill.alpha (the family's VECTOR_KEYS) reuse
one compiled step and one teacher (trained once, memoized in-process).

Expected (2 CPU cores, not yet measured end to end with this config): teacher
training ~2-12 min depending on machine load. Caution: in T6 a 2×1200 teacher with
dropout 0.5 reached only ≈ 0.883 after 12 epochs — below a plain 2×800 MLP (0.890) —
so check `teacher_test_accuracy` in the record: KD only helps when the teacher beats
the student. The teacher's logits are cached (distill.cache_teacher), so student
epochs cost about as much as plain training (fit's per-step loop, not lax.scan).
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
