"""T7 — quantization: W8A8 PTQ, per-channel vs per-tensor, W4 QAT, AdaRound and the
integer inference path, on LeNet-300-100 and a BN-folded ResCNN (Fashion-MNIST).

Settings and expected numbers: ``tables/configs/t7_quant.py``. One process trains each
float model once; every quantized variant starts from the same float weights,
data order and seed.

Run:
    jaxcomp reproduce T7 [--quick]
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcomp.data import load_dataset
from jaxcomp.experiment.paper_table import (
    Claim,
    TableKit,
    TableResult,
    accuracy_on_test,
    limit_dataset,
)
from jaxcomp.models import get_model
from jaxcomp.quant.act import act_quant
from jaxcomp.quant.adaround import adaround
from jaxcomp.quant.export import export_int
from jaxcomp.quant.intinfer import int_model
from jaxcomp.quant.ptq import layer_rules, ptq
from jaxcomp.quant.transform import weight_quant
from jaxcomp.train import fit
from jaxcomp.train.loop import init_state

TABLE = "T7"
TITLE = "Jacob et al. 2018 / Krishnamoorthi 2018 / Nagel et al. 2020 — 8- and 4-bit quantization"

PAPER = {
    "w8_per_channel_ptq_drop_pt (ResNets, ImageNet)": "≤ 0.1",
    "resnet50_w4_ptq_top1": 0.54,
    "resnet50_w4_qat_top1": 0.732,
    "resnet50_fp32_top1": 0.752,
    "adaround_w4_vs_float": "within 1%",
    "dataset": "ImageNet",
}


_KIT = TableKit("T7", "t7_quant")
load_config, _log = _KIT.load_config, _KIT.log
_acc = accuracy_on_test


def _agreement(a_model, a_params, a_ms, b_model, b_params, x) -> float:
    """Fraction of inputs on which two models predict the same class."""
    fa = jax.jit(lambda p, s, xb: jnp.argmax(a_model.apply(p, s, xb)[0], -1))
    fb = jax.jit(lambda p, xb: jnp.argmax(b_model.apply(p, {}, xb)[0], -1))
    same = 0
    for i in range(0, len(x), 1000):
        xb = x[i:i + 1000]
        same += int(jnp.sum(fa(a_params, a_ms, xb) == fb(b_params, xb)))
    return same / len(x)


def _correct(model, params, ms, ds) -> np.ndarray:
    """Per-test-example correctness (bool), for paired noise figures."""
    f = jax.jit(lambda p, s, xb: jnp.argmax(model.apply(p, s, xb)[0], -1))
    pred = np.concatenate([np.asarray(f(params, ms, ds.x_test[i:i + 1000]))
                           for i in range(0, len(ds.x_test), 1000)])
    return pred == np.asarray(ds.y_test)


def _paired_se_pt(a: np.ndarray, b: np.ndarray) -> float:
    """Standard error (pt) of acc(a) − acc(b) on the same test examples."""
    d = a.astype(np.float64) - b.astype(np.float64)
    return 100.0 * float(np.std(d, ddof=1) / np.sqrt(len(d)))


def _finetune(model, ds, params, ms, transform, lr, epochs, seed, batch_size):
    tx = optax.adam(lr)
    params = jax.tree.map(jnp.copy, params)  # the train step donates its state's buffers
    st = init_state(model, ds, tx, seed=seed, transform=transform, params=params,
                    model_state=ms)
    res = fit(model, ds, tx, epochs=epochs, batch_size=batch_size, seed=seed,
              transform=transform, state=st, scan=True, progress=False)
    return res


def _train_float(model, ds, lr, epochs, seed, batch_size):
    """``(params, model_state, test accuracy)`` of ``model`` trained in float with Adam."""
    res = fit(model, ds, optax.adam(lr), epochs=epochs, batch_size=batch_size, seed=seed,
              progress=False)
    params, ms = res.state.params, res.state.model_state
    return params, ms, _acc(model, params, ms, ds)


def _calib_batches(x, n: int, size: int) -> list:
    """The first ``n`` batches of ``size`` inputs: the PTQ calibration set."""
    return [x[i * size:(i + 1) * size] for i in range(n)]


def run(quick: bool = False) -> TableResult:
    cfg = load_config()
    q = cfg.quick
    t_start = time.perf_counter()
    seed, bs = cfg.seed, cfg.batch_size
    full = load_dataset(cfg.data)
    ds = limit_dataset(full, q.mlp_limit_train if quick else cfg.mlp.limit_train,
                q.mlp_limit_test if quick else cfg.mlp.limit_test)
    n_calib = q.calib_batches if quick else cfg.calib_batches
    calib = _calib_batches(ds.x_train, n_calib, cfg.calib_batch_size)
    rows: list[dict] = []

    def row(model_name, method, acc, epochs, **extra):
        rows.append({"model": model_name, "method": method, "train_epochs": epochs,
                     "test_acc": round(acc, 4), **extra})
        _log(f"{model_name} {method}: {acc:.4f} {extra or ''}")

    # ---------------------------------------------------------------- LeNet-300-100
    mlp = get_model("lenet300", input_shape=ds.input_shape, num_classes=ds.num_classes)
    ep = q.mlp_epochs if quick else cfg.mlp.epochs
    params, ms, acc_fp = _train_float(mlp, ds, cfg.mlp.learning_rate, ep, seed, bs)
    row("lenet300", "fp32", acc_fp, ep)

    w8a8 = ptq(mlp, params, ms, calib, bits=8, act_bits=8)
    acc_w8a8 = _acc(w8a8.model, w8a8.params, w8a8.model_state, ds)
    row("lenet300", "W8A8 PTQ", acc_w8a8, ep)
    imodel = int_model(w8a8.base, export_int(w8a8.float_params, 8),
                       w8a8.model_state["act_quant"])
    iw = imodel.init(None, None)[0]
    agree_mlp = _agreement(w8a8.model, w8a8.params, w8a8.model_state, imodel, iw, ds.x_test)
    row("lenet300", "W8A8 integer path", _acc(imodel, iw, {}, ds), ep, agreement=agree_mlp)

    w4pc = ptq(mlp, params, ms, calib, bits=4)
    acc_w4pc = _acc(w4pc.model, w4pc.params, w4pc.model_state, ds)
    row("lenet300", "W4 PTQ per-channel", acc_w4pc, ep)
    w4pt = ptq(mlp, params, ms, calib, bits=4, per_channel=False)
    acc_w4pt = _acc(w4pt.model, w4pt.params, w4pt.model_state, ds)
    row("lenet300", "W4 PTQ per-tensor", acc_w4pt, ep)
    se_c1 = _paired_se_pt(_correct(w4pc.model, w4pc.params, w4pc.model_state, ds),
                          _correct(w4pt.model, w4pt.params, w4pt.model_state, ds))

    # Equal epochs: a QAT arm that trains k more epochs is compared with the float model
    # fine-tuned the same k epochs (same optimizer, seed and data order) and its PTQ.
    qat_epochs = q.qat_epochs if quick else cfg.qat.w4_epochs
    w8a8_epochs = q.qat_epochs if quick else cfg.qat.w8a8_epochs
    float_ft = {}
    for k in sorted({qat_epochs, w8a8_epochs}):
        r = _finetune(mlp, ds, params, ms, None, cfg.qat.learning_rate, k, seed, bs)
        float_ft[k] = (r.state.params, r.state.model_state, r.history[-1]["test_accuracy"])
        row("lenet300", f"fp32 fine-tuned +{k} epochs", float_ft[k][2], ep + k)
    p4, ms4, acc_fp4 = float_ft[qat_epochs]
    w4pc_k = ptq(mlp, p4, ms4, calib, bits=4)
    acc_w4pc_k = _acc(w4pc_k.model, w4pc_k.params, w4pc_k.model_state, ds)
    row("lenet300", f"W4 PTQ per-channel of fp32 +{qat_epochs}", acc_w4pc_k, ep + qat_epochs)
    p8, ms8, acc_fp8 = float_ft[w8a8_epochs]
    w8a8_k = ptq(mlp, p8, ms8, calib, bits=8, act_bits=8)
    acc_w8a8_k = _acc(w8a8_k.model, w8a8_k.params, w8a8_k.model_state, ds)
    row("lenet300", f"W8A8 PTQ of fp32 +{w8a8_epochs}", acc_w8a8_k, ep + w8a8_epochs)

    t = weight_quant(4)
    r = _finetune(mlp, ds, params, ms, t, cfg.qat.learning_rate, qat_epochs, seed, bs)
    acc_w4qat = r.history[-1]["test_accuracy"]
    row("lenet300", f"W4 QAT per-channel (+{qat_epochs})", acc_w4qat, ep + qat_epochs)

    pc = cfg.adaround.per_channel
    x_ada = ds.x_train[:cfg.adaround.calib_size]
    ada = adaround(mlp, params, ms, x_ada, bits=4, per_channel=pc,
                   iters=q.adaround_iters if quick else cfg.adaround.iters,
                   reg=cfg.adaround.reg, key=jax.random.key(seed))
    acc_ada = _acc(mlp, ada, ms, ds)
    acc_rtn = acc_w4pc if pc else acc_w4pt
    scheme = "per-channel" if pc else "per-tensor"
    row("lenet300", f"W4 AdaRound {scheme}", acc_ada, ep)

    aq = act_quant(mlp, layer_rules(params, 8), 8)
    _, ms_aq = aq.model.init(jax.random.key(0), ds.x_train[:1])
    r = _finetune(aq.model, ds, params, ms_aq, weight_quant(8), cfg.qat.learning_rate,
                  w8a8_epochs, seed, bs)
    acc_w8a8qat = r.history[-1]["test_accuracy"]
    row("lenet300", f"W8A8 QAT (+{w8a8_epochs})", acc_w8a8qat, ep + w8a8_epochs)

    # ---------------------------------------------------------------- ResCNN (BN folded)
    cds = limit_dataset(full, q.cnn_limit_train if quick else cfg.cnn.limit_train,
                 q.cnn_limit_test if quick else cfg.cnn.limit_test)
    cnn = get_model("rescnn", input_shape=cds.input_shape, num_classes=cds.num_classes,
                    channels=tuple(q.cnn_channels if quick else cfg.cnn.channels))
    cep = q.cnn_epochs if quick else cfg.cnn.epochs
    cp, cms, acc_cnn_fp = _train_float(cnn, cds, cfg.cnn.learning_rate, cep, seed, bs)
    row("rescnn", "fp32 (BN)", acc_cnn_fp, cep)
    ccalib = _calib_batches(cds.x_train, n_calib, cfg.calib_batch_size)
    c_pc = ptq(cnn, cp, cms, ccalib, bits=8, act_bits=8)
    acc_c_pc = _acc(c_pc.model, c_pc.params, c_pc.model_state, cds)
    row("rescnn", "W8A8 PTQ per-channel (folded)", acc_c_pc, cep)
    c_pt = ptq(cnn, cp, cms, ccalib, bits=8, act_bits=8, per_channel=False)
    acc_c_pt = _acc(c_pt.model, c_pt.params, c_pt.model_state, cds)
    row("rescnn", "W8A8 PTQ per-tensor (folded)", acc_c_pt, cep)
    c4_pc = ptq(cnn, cp, cms, ccalib, bits=4, act_bits=8)
    c4_pt = ptq(cnn, cp, cms, ccalib, bits=4, act_bits=8, per_channel=False)
    row("rescnn", "W4A8 PTQ per-channel (folded)",
        _acc(c4_pc.model, c4_pc.params, c4_pc.model_state, cds), cep)
    row("rescnn", "W4A8 PTQ per-tensor (folded)",
        _acc(c4_pt.model, c4_pt.params, c4_pt.model_state, cds), cep)
    icnn = int_model(c_pc.base, export_int(c_pc.float_params, 8), c_pc.model_state["act_quant"])
    icw = icnn.init(None, None)[0]
    agree_cnn = _agreement(c_pc.model, c_pc.params, c_pc.model_state, icnn, icw, cds.x_test)
    row("rescnn", "W8A8 integer path", _acc(icnn, icw, {}, cds), cep, agreement=agree_cnn)

    pt = 100.0
    claims = [
        Claim("a", "LeNet-300-100 W8A8 PTQ drop vs fp32 (pt) <= 0.3",
              (acc_fp - acc_w8a8) * pt, 0.3, "<="),
        Claim("b", "BN-folded ResCNN W8A8: per-channel - per-tensor (pt) >= 0",
              (acc_c_pc - acc_c_pt) * pt, 0.0, ">="),
        Claim("c1", "W4 PTQ per-channel - per-tensor (pt) >= 0",
              (acc_w4pc - acc_w4pt) * pt, 0.0, ">="),
        Claim("c2", f"W4 QAT (+{qat_epochs} epochs) - W4 PTQ per-channel of fp32 fine-tuned "
              f"+{qat_epochs} (pt) >= 0", (acc_w4qat - acc_w4pc_k) * pt, 0.0, ">="),
        Claim("c3", f"fp32 fine-tuned +{qat_epochs} - W4 QAT (+{qat_epochs}) (pt) <= 1.0",
              (acc_fp4 - acc_w4qat) * pt, 1.0, "<="),
        Claim("d", f"AdaRound W4 - round-to-nearest W4, {scheme} (pt) >= 1.0",
              (acc_ada - acc_rtn) * pt, 1.0, ">="),
        Claim("e", f"W8A8 QAT (+{w8a8_epochs}) - W8A8 PTQ of fp32 fine-tuned +{w8a8_epochs} "
              "(pt) >= -0.1", (acc_w8a8qat - acc_w8a8_k) * pt, -0.1, ">="),
        Claim("f1", "LeNet-300-100 integer path agrees with fake-quant (%) >= 99.9",
              agree_mlp * pt, 99.9, ">="),
        Claim("f2", "ResCNN integer path agrees with fake-quant (%) >= 99.9",
              agree_cnn * pt, 99.9, ">="),
    ]
    ours = {
        "lenet300_fp32_acc": acc_fp, "lenet300_w8a8_ptq_acc": acc_w8a8,
        "lenet300_w4_ptq_per_channel_acc": acc_w4pc, "lenet300_w4_ptq_per_tensor_acc": acc_w4pt,
        "lenet300_w4_qat_acc": acc_w4qat, "lenet300_w4_adaround_acc": acc_ada,
        "lenet300_w8a8_qat_acc": acc_w8a8qat,
        f"lenet300_fp32_ft{qat_epochs}_acc": acc_fp4, f"lenet300_fp32_ft{w8a8_epochs}_acc": acc_fp8,
        f"lenet300_w4_ptq_per_channel_of_ft{qat_epochs}_acc": acc_w4pc_k,
        f"lenet300_w8a8_ptq_of_ft{w8a8_epochs}_acc": acc_w8a8_k,
        "w4_per_channel_minus_per_tensor_paired_se_pt": se_c1, "rescnn_fp32_acc": acc_cnn_fp,
        "rescnn_w8a8_per_channel_acc": acc_c_pc, "rescnn_w8a8_per_tensor_acc": acc_c_pt,
        "int_path_agreement_lenet300": agree_mlp, "int_path_agreement_rescnn": agree_cnn,
        "dataset": "Fashion-MNIST", "seconds": round(time.perf_counter() - t_start, 1),
    }
    deviations = [
        "Fashion-MNIST with LeNet-300-100 and a small BN ResCNN instead of ImageNet ResNets "
        "and MobileNets; one seed.",
        f"ResCNN trained {cfg.cnn.epochs} epochs on the first {cfg.cnn.limit_train} training "
        "images (CPU budget); tested on all 10k test images.",
        "QAT fine-tunes from the fp32 weights (Adam 1e-4) instead of training from scratch; "
        "activation ranges by moving average (momentum 0.9) during QAT. Equal epochs: each "
        "QAT arm is compared with the fp32 model fine-tuned the same extra epochs (same "
        "optimizer, seed and data order) and with that model's PTQ.",
        f"AdaRound uses {scheme} scales (the RTN baseline uses the same scales), float-model "
        "layer inputs (not the quantized-prefix inputs), Adam 1e-2, batch 256.",
        "Activations are quantized at every Dense/Conv input (including the image), not at "
        "every op output; residual additions and pooling stay in float.",
    ]
    if quick:
        deviations.insert(0, "QUICK MODE: tiny subsets and 1 epoch; claims are not meaningful.")
    return TableResult(TABLE, TITLE, PAPER, ours, claims, deviations,
                       _analysis(claims, acc_fp, acc_rtn, se_c1), quick, rows)


def _analysis(claims: list[Claim], acc_fp: float, acc_rtn: float, se_c1: float) -> str:
    """A short, number-driven note on the failing claims (one seed)."""
    notes = []
    for c in claims:
        if c.passed:
            continue
        if c.id == "c1":
            notes.append(f"c1 FAIL ({c.value:+.2f} pt): per-channel symmetric min/max scales "
                         "bound every weight's rounding error by its own channel's step (≤ the "
                         "tensor's), yet gave lower test accuracy at 4 bits on LeNet-300-100 in "
                         f"this single-seed run (paired test-set SE of the difference "
                         f"{se_c1:.2f} pt).")
        elif c.id == "d":
            notes.append(f"d FAIL ({c.value:+.2f} pt): round-to-nearest W4 loses only "
                         f"{(acc_fp - acc_rtn) * 100:.2f} pt against fp32 here, so a +1 pt gain "
                         "over it would put AdaRound above the float model; the claim is "
                         "unreachable on this model (the paper's ImageNet ResNets lose tens of "
                         "points with RTN W4).")
        else:
            notes.append(f"{c.id} FAIL ({c.value:.3g} vs {c.op} {c.threshold:g}).")
    return " ".join(notes) if notes else "All claims pass."
