"""T6 — Hinton et al. 2015 with a LeNet-5 CNN teacher (the default ``teacher.model``;
``"mlp"`` gives the paper's MLP teacher): a distilled 2×800 MLP beats the same MLP trained
on hard labels; a 30-30 student's best temperature is reported.

See ``tables/configs/t6_hinton.py`` for the settings and the expected numbers. The
teacher (LeNet-5 by default; the paper's 2×1200 dropout MLP with
``teacher.model = "mlp"``) is trained once; its training-set logits are cached
and every student epoch is one ``lax.scan`` that reads them.
The plain student is the same compiled step with ``alpha = 0`` (pure
cross-entropy), so method and baseline differ only in the loss numbers.

Run:
    jaxcomp reproduce T6 [--quick]
"""

from __future__ import annotations

import time

import numpy as np
import optax

import jaxcomp.distill as kd
from jaxcomp.data import load_dataset
from jaxcomp.experiment.paper_table import (
    Claim,
    TableResult,
    limit_dataset,
    load_table_config,
    table_logger,
)
from jaxcomp.models import get_model
from jaxcomp.train import fit

TABLE = "T6"

PAPER = {
    "teacher_test_acc": 1 - 67 / 10000,
    "plain_student_test_acc": 1 - 146 / 10000,
    "kd_student_test_acc": 1 - 74 / 10000,
    "kd_minus_plain_pt": (146 - 74) / 100,
    "tiny_best_T": "2.5-4",
    "dataset": "MNIST",
}


def load_config():
    return load_table_config("t6_hinton")


_log = table_logger("T6")


def _settings(cfg, quick: bool) -> dict:
    s = {"limit_train": cfg.limit_train, "limit_test": cfg.limit_test,
         "teacher_epochs": cfg.teacher.epochs, "student_epochs": cfg.student.epochs,
         "tiny_epochs": cfg.tiny.epochs, "seeds": tuple(cfg.seeds),
         "temperatures": tuple(cfg.tiny.temperatures)}
    if quick:
        s.update({k: (tuple(v) if isinstance(v, tuple | list) else v)
                  for k, v in cfg.quick.items()})
    return s


def _data(cfg, s):
    return limit_dataset(load_dataset(cfg.data), s["limit_train"], s["limit_test"])


class _Trainer:
    """One compiled KD epoch per student size; plain training is ``alpha = 0``."""

    def __init__(self, ds, features, cfg, cache):
        self.ds, self.cfg, self.cache = ds, cfg, cache
        self.model = get_model("mlp", input_shape=ds.input_shape, num_classes=ds.num_classes,
                               features=tuple(features))
        self.tx = optax.adam(cfg.learning_rate)
        self.loss_fn = kd.make_loss_fn("kd")  # one loss object: every run reuses one compile

    def run(self, seed: int, epochs: int, temperature: float, alpha: float) -> dict:
        ls = kd.loss_state(temperature=temperature, alpha=alpha)
        r = kd.fit_scan(self.model, self.ds, self.tx, epochs=epochs,
                        batch_size=self.cfg.batch_size, seed=seed, loss_state=ls,
                        cached=self.cache, loss_fn=self.loss_fn, eval_every=epochs)
        return {"test_acc": r.final["test_accuracy"], "test_nll": r.final["test_nll"],
                "seconds": r.train_seconds}


def _ms(xs) -> dict:
    xs = np.asarray(xs, np.float64)
    return {"mean": float(xs.mean()), "std": float(xs.std(ddof=1)) if len(xs) > 1 else 0.0}


_CNN_NAMES = {"lenet5_caffe": "LeNet-5 (Caffe variant)", "lenet5": "LeNet-5"}


def teacher_label(tc) -> str:
    """How the title and the analysis name the teacher the config asks for.

    Example:
        >>> teacher_label(load_config().teacher)
        'LeNet-5 (Caffe variant) CNN teacher'
    """
    if tc.model == "mlp":
        f = tuple(tc.features)
        shape = f"{len(f)}×{f[0]}" if len(set(f)) == 1 else "-".join(map(str, f))
        return f"{shape} MLP teacher"
    return f"{_CNN_NAMES[tc.model]} CNN teacher" if tc.model in _CNN_NAMES \
        else f"{tc.model} teacher"


def title(tc) -> str:
    """The table's title, naming the teacher actually used."""
    return (f"Hinton et al. 2015 — Distilling the Knowledge in a Neural Network "
            f"({teacher_label(tc)}, MLP students)")


def _teacher_name(tc) -> str:
    return str(tuple(tc.features)) if tc.model == "mlp" else tc.model


def _train_teacher(tc, ds, cfg, epochs: int):
    """The teacher and its training result: the paper's dropout MLP (optionally with
    input jitter, through the distillation scan) or a convolutional net (``fit``)."""
    tx = optax.adam(cfg.learning_rate)
    if tc.model == "mlp":
        teacher = get_model("mlp", input_shape=ds.input_shape, num_classes=ds.num_classes,
                            features=tuple(tc.features), dropout=tc.dropout)
        aug = (lambda x, k: kd.jitter(x, k, tc.jitter)) if tc.jitter else None
        return teacher, kd.fit_scan(teacher, ds, tx, epochs=epochs, batch_size=cfg.batch_size,
                                    seed=tc.seed, augment=aug, eval_every=max(1, epochs))
    teacher = get_model(tc.model, input_shape=ds.input_shape, num_classes=ds.num_classes)
    return teacher, fit(teacher, ds, tx, epochs=epochs, batch_size=cfg.batch_size,
                        seed=tc.seed, eval_every=max(1, epochs), progress=False)


TITLE = title(load_config().teacher)


def run(quick: bool = False) -> TableResult:
    cfg = load_config()
    s = _settings(cfg, quick)
    t0, c0 = time.perf_counter(), time.process_time()
    ds = _data(cfg, s)
    tc = cfg.teacher
    teacher, tr = _train_teacher(tc, ds, cfg, s["teacher_epochs"])
    t_acc, t_nll = tr.final["test_accuracy"], tr.final["test_nll"]
    _log(f"teacher {_teacher_name(tc)}: acc {t_acc:.4f} nll {t_nll:.4f} "
         f"({tr.train_seconds:.0f} s)")
    cache = kd.teacher_outputs(teacher, tr.state.params, tr.state.model_state, ds.x_train)

    rows = [{"run": "teacher", "features": _teacher_name(tc), "seed": tc.seed,
             "T": "-", "test_acc": t_acc, "test_nll": t_nll}]
    student = _Trainer(ds, cfg.student.features, cfg, cache)
    plain, distilled = [], []
    for seed in s["seeds"]:
        p = student.run(seed, s["student_epochs"], cfg.temperature, 0.0)
        d = student.run(seed, s["student_epochs"], cfg.temperature, cfg.alpha)
        plain.append(p)
        distilled.append(d)
        _log(f"seed {seed}: plain {p['test_acc']:.4f}/{p['test_nll']:.4f}  "
             f"kd {d['test_acc']:.4f}/{d['test_nll']:.4f}")
        rows.append({"run": "student plain", "features": str(tuple(cfg.student.features)),
                     "seed": seed, "T": "-", "test_acc": p["test_acc"],
                     "test_nll": p["test_nll"]})
        rows.append({"run": "student KD", "features": str(tuple(cfg.student.features)),
                     "seed": seed, "T": cfg.temperature, "test_acc": d["test_acc"],
                     "test_nll": d["test_nll"]})

    tiny = _Trainer(ds, cfg.tiny.features, cfg, cache)
    tiny_plain = tiny.run(cfg.tiny.seed, s["tiny_epochs"], 1.0, 0.0)
    rows.append({"run": "tiny plain", "features": str(tuple(cfg.tiny.features)),
                 "seed": cfg.tiny.seed, "T": "-", "test_acc": tiny_plain["test_acc"],
                 "test_nll": tiny_plain["test_nll"]})
    tiny_acc = {}
    for temp in s["temperatures"]:
        r = tiny.run(cfg.tiny.seed, s["tiny_epochs"], temp, cfg.alpha)
        tiny_acc[temp] = r["test_acc"]
        rows.append({"run": "tiny KD", "features": str(tuple(cfg.tiny.features)),
                     "seed": cfg.tiny.seed, "T": temp, "test_acc": r["test_acc"],
                     "test_nll": r["test_nll"]})
        _log(f"tiny T={temp}: acc {r['test_acc']:.4f}")
    best_t = max(tiny_acc, key=tiny_acc.get)

    p_acc = _ms([r["test_acc"] for r in plain])
    d_acc = _ms([r["test_acc"] for r in distilled])
    p_nll = _ms([r["test_nll"] for r in plain])
    d_nll = _ms([r["test_nll"] for r in distilled])
    gain = _ms([100 * (d["test_acc"] - p["test_acc"]) for p, d in zip(plain, distilled,
                                                                      strict=True)])
    claims = [
        Claim("a", "precondition: teacher ≥ plain 2×800 student + 1 pt (pt)",
              100 * (t_acc - p_acc["mean"]), 1.0, ">="),
        Claim("b1", f"KD student (T={cfg.temperature:g}) − plain student, mean of "
              f"{len(plain)} seeds (pt)", gain["mean"], 0.2, ">="),
        Claim("b2", "plain student test NLL − KD student test NLL (mean; > 0 = KD lower)",
              p_nll["mean"] - d_nll["mean"], 0.0, ">"),
        Claim("c", f"measured best T for a 30-30 student, of {list(s['temperatures'])} "
              "(paper 2.5–4; reported, not gating)", float(best_t), 2.5, ">=", gating=False),
    ]
    ours = {
        "teacher_test_acc": t_acc, "teacher_test_nll": t_nll,
        "plain_student_test_acc": p_acc, "kd_student_test_acc": d_acc,
        "plain_student_test_nll": p_nll, "kd_student_test_nll": d_nll,
        "kd_minus_plain_pt": gain, "tiny_best_T": best_t,
        "tiny_plain_test_acc": tiny_plain["test_acc"],
        "tiny_kd_test_acc_by_T": {str(k): v for k, v in tiny_acc.items()},
        "dataset": "Fashion-MNIST" + (" (subset)" if s["limit_train"] else ""),
        "wall_seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - c0,
    }
    deviations = [
        "Fashion-MNIST instead of MNIST (offline data); absolute accuracies are not comparable.",
        f"Short training: teacher {s['teacher_epochs']} epochs, students "
        f"{s['student_epochs']}, 30-30 student {s['tiny_epochs']} (Adam "
        f"{cfg.learning_rate:g}, batch {cfg.batch_size}) instead of the paper's long SGD runs "
        "with max-norm constraints — to fit 10 minutes on 2 CPU cores.",
        *_teacher_deviations(tc),
        f"Soft-target weight α = {cfg.alpha} (the paper gives no number, only 'a considerably "
        "lower weight on the hard-target term'); the soft term is multiplied by T².",
        "Teacher logits are computed once on the un-jittered training set in eval mode (no "
        "dropout) and cached; students see no jitter and no dropout.",
        "The plain student is the same compiled step with α = 0 (pure cross-entropy); same "
        "init seed and batch order as its KD twin.",
        f"The 30-30 temperature sweep uses one seed ({cfg.tiny.seed}).",
    ]
    analysis = (f"Teacher: {teacher_label(tc)} ({_teacher_name(tc)}). "
                + _analysis(claims, t_acc, p_acc, d_acc, p_nll, d_nll, best_t))
    return TableResult(TABLE, title(tc), PAPER, ours, claims, deviations, analysis, quick, rows)


def _teacher_deviations(tc) -> list[str]:
    mlp_history = ("The paper's teacher is a 2×1200 MLP with dropout and ±2 px jitter. Here, "
                   "within the budget, it never cleared the +1 pt precondition on "
                   "Fashion-MNIST: 0.883 in 12 epochs without jitter (0.893 in 40 epochs), "
                   "0.856 with ±2 px jitter (first full run, commit 4fc6d99), against 0.8896 "
                   "for the plain 2×800 student, and KD from it lost 0.6–2.2 pt.")
    if tc.model == "mlp":
        return [mlp_history, f"Teacher dropout {tc.dropout} on hidden units only (the paper "
                f"also drops 20% of the inputs); input jitter ±{tc.jitter} px (paper: ±2 px)."]
    return [mlp_history + f" The teacher here is therefore a convolutional net, {tc.model} "
            "(LeNet-5, Caffe variant), trained with Adam and no augmentation; the students "
            "are the paper's MLPs."]


def _analysis(claims, t_acc, p_acc, d_acc, p_nll, d_nll, best_t) -> str:
    out = []
    a, b1, b2 = claims[0], claims[1], claims[2]
    if not a.passed:
        out.append(f"Precondition (a) fails: the teacher ({t_acc:.4f}) is only "
                   f"{a.value:.2f} pt above the plain 2×800 student ({p_acc['mean']:.4f}). On "
                   "Fashion-MNIST an MLP's accuracy saturates well below 100% and the two sizes "
                   "are close; with the paper's sizes the teacher/student gap is much smaller "
                   "than on MNIST (146 vs 67 errors).")
    else:
        out.append(f"Precondition (a) holds: the teacher ({t_acc:.4f}) is {a.value:.2f} pt "
                   f"above the plain 2×800 student ({p_acc['mean']:.4f}).")
    if t_acc < p_acc["mean"]:
        out.append("The teacher is weaker than the plain student, so distillation (α = 0.9 on "
                   "the soft targets) pulls the student toward a worse model: the claims (b) "
                   "cannot be expected to hold without a stronger teacher (longer training, "
                   "less dropout), which the 10-minute budget on 2 cores does not allow.")
    out.append(f"KD vs plain: {d_acc['mean']:.4f} vs {p_acc['mean']:.4f} accuracy "
               f"({b1.value:+.2f} pt, claim b1 {'PASS' if b1.passed else 'FAIL'}); test NLL "
               f"{d_nll['mean']:.4f} vs {p_nll['mean']:.4f} (b2 "
               f"{'PASS' if b2.passed else 'FAIL'}).")
    out.append(f"30-30 student: measured best temperature {best_t:g} (paper: 2.5–4; "
               "reported, not gating).")
    return " ".join(out)
