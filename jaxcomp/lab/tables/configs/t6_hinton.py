"""T6 — Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network", with
a LeNet-5 CNN teacher (``teacher.model``; the table's title names the teacher used).

Teacher: the paper distils a 784-1200-1200-10 MLP trained with dropout and ±2 px input
jitter. On Fashion-MNIST, within 10 minutes on 2 CPU cores, no MLP teacher we tried
beats the plain 2×800 student by the +1 pt the claims need: 2×1200 with dropout 0.5
reached 0.883 in 12 epochs (0.893 in 40 epochs, 234 s), against 0.8896 for the student,
and ±2 px jitter left it at 0.856. The default teacher is therefore a convolutional
net, LeNet-5 (Caffe variant: conv 20 and 50 filters of 5×5, dense 500), 6 epochs with
Adam — a documented deviation (``teacher.model``; ``teacher.model = "mlp"`` restores
the MLP teacher with ``teacher.features / dropout / jitter``). Student: 784-800-800-10,
trained plain (cross-entropy) and distilled at T = 20 (α = 0.9 on the soft-target
term, which is multiplied by T²), same init seeds, data order and epochs, 3 seeds. A
30-30 student is swept over temperatures. Teacher logits are cached once (eval mode)
and served to every run.

Run:
    jaxcomp reproduce T6            # full mode, writes docs/results/T6.md/.json
    jaxcomp reproduce T6 --quick    # smoke test (subset, 1 epoch), T6_quick.*
Expected (a trial run of this recipe, seed 0, 2 idle cores): teacher 0.9144 after 6
epochs (237 s with a test pass each epoch); plain 2×800 student 0.8887, KD student
(T = 20) 0.8971 (+0.84 pt), KD at T = 4 0.8983. docs/results/T6.md has the full run.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.name = "t6_hinton"
    c.data = "fashion_mnist"
    c.limit_train = 0            # 0 = all 60k
    c.limit_test = 0             # 0 = all 10k
    c.batch_size = 128
    c.learning_rate = 1e-3       # Adam
    c.teacher = ml_collections.ConfigDict({
        "model": "lenet5_caffe", "epochs": 6, "seed": 100,
        # used when model == "mlp" (the paper's teacher; 12 epochs was its budget here)
        "features": (1200, 1200), "dropout": 0.5, "jitter": 0})
    c.student = ml_collections.ConfigDict({"features": (800, 800), "epochs": 10})
    c.tiny = ml_collections.ConfigDict({
        "features": (30, 30), "epochs": 10, "seed": 0,
        "temperatures": (1.0, 2.0, 2.5, 4.0, 8.0, 20.0)})
    c.seeds = (0, 1, 2)
    c.temperature = 20.0
    c.alpha = 0.9                # weight of the T²-scaled soft-target term
    # Overrides for --quick (CI smoke test: seconds, claims not meaningful).
    c.quick = ml_collections.ConfigDict({
        "limit_train": 2560, "limit_test": 1000, "teacher_epochs": 1, "student_epochs": 1,
        "tiny_epochs": 3, "seeds": (0,), "temperatures": (2.5, 20.0)})
    c.lock()
    return c
