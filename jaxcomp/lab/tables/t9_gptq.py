"""T9 — GPTQ, AWQ, SmoothQuant and Hadamard rotation (QuaRot) on the byte GPT.

Settings and expected numbers: ``tables/configs/t9_gptq.py``. Per seed, the base GPT
is trained (or read from the cache, :mod:`jaxcomp.lab.tables.gpt_base`), turned into
calibration blocks (:mod:`jaxcomp.models.gpt_blocks`) and quantized by every method
from the same calibration windows; each row is valid bits per byte.

Run:
    jaxcomp reproduce T9 [--quick]
"""

from __future__ import annotations

import time

import jax
import numpy as np

from jaxcomp.experiment.paper_table import (
    Claim,
    TableResult,
    load_table_config,
    mean_std,
    table_logger,
)
from jaxcomp.lab.tables import gpt_base
from jaxcomp.models import gpt_blocks as gb
from jaxcomp.models import gpt_ptq
from jaxcomp.quant import calib

TABLE = "T9"
TITLE = ("Frantar et al. 2022 (GPTQ) / Lin et al. 2023 (AWQ) / Xiao et al. 2023 "
         "(SmoothQuant) / Ashkboos et al. 2024 (QuaRot) — LLM post-training quantization")

PAPER = {
    "gptq_w4_vs_fp16 (OPT/BLOOM ppl)": "within a few tenths",
    "gptq_w3_vs_rtn_w3": "RTN collapses, GPTQ holds",
    "awq_w3_w4_g128 (LLaMA)": "beats RTN, matches or beats GPTQ",
    "smoothquant_w8a8 (OPT > 6.7B)": "matches FP16; naive W8A8 collapses",
    "quarot_w4a4_kv4 (LLaMA-2)": "within about 0.5 ppl",
    "dataset": "WikiText-2 / C4 perplexity",
}

ROWS = ("fp32", "RTN W3 g", "RTN W4 g", "GPTQ W3 g", "GPTQ W4 g", "AWQ W3 g", "AWQ W4 g",
        "W8A8 naive (per-tensor act)", "W8A8 SmoothQuant (per-tensor act)",
        "W4A4 per-token, no rotation", "W4A4 per-token, Hadamard rotation",
        "KV cache int8 (fake-quant in blocks)")
_log = table_logger(TABLE)


def load_config(quick: bool = False):
    return load_table_config("t9_gptq", quick)


def run_seed(cfg, seed: int, quick: bool) -> tuple[dict[str, float], dict]:
    """Every row's valid bpb for one seed, and the base model's facts."""
    base = gpt_base.trained_gpt(cfg.gpt, seed, quick, log=_log)
    model, params = base.model, base.params
    spec = gb.gpt_spec(model)
    toks = gpt_base.calib_tokens(base.data, base.context, cfg.calib_windows, cfg.calib_batch, seed)
    gs = cfg.group_size

    def bpb(m, p):  # the model first: most rows run a tapped variant of the base model
        return base.bpb(p, m)

    def blocks_of(sp, p):
        xs = [gb.embed_forward(sp, gb.pure(p), t) for t in toks]
        return gb.gpt_blocks(model, p, sp), xs

    out: dict[str, float] = {"fp32": bpb(model, params)}
    blocks, xs = blocks_of(spec, params)
    timing = {}
    for method in ("rtn", "gptq", "awq"):
        for bits in (3, 4):
            t0 = time.perf_counter()
            res = calib.quantize_blocks(blocks, xs, method, bits=bits, group_size=gs)
            timing[f"{method}_w{bits}_s"] = time.perf_counter() - t0
            out[f"{method.upper()} W{bits} g"] = bpb(model, gb.write_back(params, res.blocks))
            if method == "gptq" and bits == 4:
                gptq4 = res
    _log(f"seed {seed}: weight-only rows done")

    # W8A8: per-channel int8 weights, static per-tensor int8 activations
    stats = gpt_ptq.activation_stats(spec, params, toks)
    out["W8A8 naive (per-tensor act)"] = bpb(
        gb.tapped_model(model, gpt_ptq.static_tap(stats), spec), gpt_ptq.w8a8_params(spec, params))
    sp = gpt_ptq.smooth_gpt(spec, params, stats, alpha=cfg.smooth_alpha)
    sstats = gpt_ptq.activation_stats(spec, sp, toks)
    out["W8A8 SmoothQuant (per-tensor act)"] = bpb(
        gb.tapped_model(model, gpt_ptq.static_tap(sstats), spec), gpt_ptq.w8a8_params(spec, sp))

    # W4A4: GPTQ W4 weights, per-token 4-bit activations, with and without rotation
    a4 = calib.act_quant_tap(4)
    out["W4A4 per-token, no rotation"] = bpb(gb.tapped_model(model, a4, spec),
                                            gb.write_back(gb.pure(params), gptq4.blocks))
    rspec, rp = gpt_ptq.rotate_gpt(spec, params, jax.random.key(cfg.rotation_seed + 1000 * seed))
    rblocks, rxs = blocks_of(rspec, rp)
    rres = calib.quantize_blocks(rblocks, rxs, "gptq", bits=4, group_size=gs)
    out["W4A4 per-token, Hadamard rotation"] = bpb(gb.tapped_model(model, a4, rspec),
                                                  gb.write_back(rp, rres.blocks))
    rot_fp = bpb(gb.tapped_model(model, spec=rspec), rp)
    out["KV cache int8 (fake-quant in blocks)"] = bpb(gb.tapped_model(model, kv_bits=8), params)
    summary = gpt_ptq.outlier_summary(stats)
    facts = {**base.facts(), "rotated_fp32_bpb": rot_fp,
             "act_max_over_median": max(v["max_over_median"] for v in summary.values()),
             "act_max_over_median_median": float(np.median(
                 [v["max_over_median"] for v in summary.values()])),
             "act_kurtosis_max": max(v["kurtosis"] for v in summary.values()),
             "act_kurtosis_median": float(np.median([v["kurtosis"] for v in summary.values()])),
             "per_layer": summary, **timing}
    _log(f"seed {seed}: " + ", ".join(f"{k}={v:.4f}" for k, v in out.items()))
    return out, facts


def run(quick: bool = False) -> TableResult:
    cfg = load_config(quick)
    t_start = time.perf_counter()
    per_seed, facts = zip(*(run_seed(cfg, seed, quick) for seed in cfg.seeds), strict=True)
    mean = {k: float(np.mean([r[k] for r in per_seed])) for k in per_seed[0]}
    gs = cfg.group_size
    rows = []
    for k in per_seed[0]:
        name = k.replace(" g", f" g{gs}") if k.endswith(" g") else k
        rows.append({"method": name, "valid_bpb": mean_std([r[k] for r in per_seed]),
                     "minus_fp32": mean[k] - mean["fp32"],
                     **{f"seed{s}": r[k] for s, r in zip(cfg.seeds, per_seed, strict=True)}})
    m = mean
    claims = [
        Claim("a1", f"GPTQ W3 g{gs} - RTN W3 g{gs} (bpb) < 0", m["GPTQ W3 g"] - m["RTN W3 g"],
              0.0, "<"),
        Claim("a2", f"GPTQ W4 g{gs} - RTN W4 g{gs} (bpb) < 0", m["GPTQ W4 g"] - m["RTN W4 g"],
              0.0, "<"),
        Claim("b", f"AWQ W3 g{gs} - RTN W3 g{gs} (bpb) < 0", m["AWQ W3 g"] - m["RTN W3 g"],
              0.0, "<"),
        Claim("c", f"GPTQ W4 g{gs} - fp32 (bpb) <= 0.01", m["GPTQ W4 g"] - m["fp32"], 0.01,
              "<="),
        Claim("d", "SmoothQuant W8A8 - naive W8A8, per-tensor activations (bpb) <= 0",
              m["W8A8 SmoothQuant (per-tensor act)"] - m["W8A8 naive (per-tensor act)"], 0.0,
              "<="),
        Claim("e", "W4A4 per-token: Hadamard-rotated - unrotated (bpb) < 0",
              m["W4A4 per-token, Hadamard rotation"] - m["W4A4 per-token, no rotation"], 0.0,
              "<"),
        Claim("f", "KV cache int8 - fp32 (bpb) <= 0.01",
              m["KV cache int8 (fake-quant in blocks)"] - m["fp32"], 0.01, "<="),
    ]
    mf = lambda k: float(np.mean([f[k] for f in facts]))
    ours = {f"{r['method']}_bpb": r["valid_bpb"] for r in rows}
    ours.update({
        **gpt_base.base_ours(facts), "base_train_seconds": mf("train_seconds"),
        "rotated_fp32_bpb": mf("rotated_fp32_bpb"),
        "act_channel_max_over_median (worst layer)": mf("act_max_over_median"),
        "act_channel_max_over_median (median layer)": mf("act_max_over_median_median"),
        "act_kurtosis (worst layer)": mf("act_kurtosis_max"),
        "act_kurtosis (median layer)": mf("act_kurtosis_median"),
        "gptq_w4_seconds": mf("gptq_w4_s"), "awq_w4_seconds": mf("awq_w4_s"),
        "rtn_w4_seconds": mf("rtn_w4_s"), "seeds": len(cfg.seeds),
        "calib_windows": cfg.calib_windows, "dataset": "fortunes (Debian), bytes",
        "seconds": round(time.perf_counter() - t_start, 1),
    })
    deviations = [
        gpt_base.base_deviation("OPT/BLOOM/LLaMA", "perplexity"),
        "Every method covers the attention q/k/v/o and MLP up/down linears only (embedding "
        "and tied head in float); weights asymmetric, group 128 along the input axis.",
        "W8A8: per-channel symmetric int8 weights, one static per-tensor int8 scale per "
        "linear input from the calibration maximum. SmoothQuant (alpha 0.5) smooths the "
        "q/k/v and up inputs (folded into ln1/ln2); o and down inputs are not smoothed.",
        "W4A4: GPTQ W4 g128 weights with per-token symmetric 4-bit activations on every "
        "linear input; KV cache and attention softmax stay in float. Rotation: LayerNorms "
        "folded, writers centred, residual stream rotated by a random Hadamard matrix, "
        "online Hadamard before o and down (QuaRot without its KV quantization).",
        "KV int8: keys (after positions) and values fake-quantized per token and head inside "
        "the blocks' parallel forward (jaxcomp.models.gpt_blocks, kv_bits=8): symmetric "
        "absmax codes per (token, kv-head), the grid of the decode path's int8 cache with "
        "kv_scale='token' (jaxcomp.models.kv_cache), evaluated without decoding.",
    ]
    return gpt_base.gpt_table_result(TABLE, TITLE, PAPER, ours, claims, deviations, quick,
                                     rows, quick_also=", group 32", explain={"d": _explain_d})


def _explain_d(c: Claim, ours: dict) -> str:
    """Why claim d (SmoothQuant helps) can fail here: the activations' outliers are small."""
    return (f"d FAIL ({c.value:+.4f} bpb): the linear inputs' channel max/median is "
            f"{ours['act_channel_max_over_median (worst layer)']:.1f} in the worst layer "
            f"(kurtosis {ours['act_kurtosis (worst layer)']:.1f}); without large outlier "
            "channels at this scale there is little for smoothing to migrate.")
