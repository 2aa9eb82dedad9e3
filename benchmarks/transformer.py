"""Transformer inference: prefill and decode tokens/s and peak memory of a 4-layer width-256 GPT.

Variants (random weights; speed does not depend on them):

* ``fp32`` — the float model; ``bf16`` — linear kernels in bf16 (f32 accumulation);
* ``w8a8`` — int8 kernels per channel + dynamic per-token int8 activations, int8 ``dot_general``
  with int32 accumulation (:mod:`jaxcomp.quant.lowp`);
* ``w4a16`` — int4 kernels (packed, group 64) dequantized next to the matmul;
* ``kv_int8`` — fp32 weights, KV cache stored as int8 with per-token scales
  (:mod:`jaxcomp.models.kv_cache`).

Prefill: ``forward`` of (8, 256) tokens into an empty cache. Decode: ``generate`` of 128 new
tokens from a 1-token prompt at batch 1 and 8 (tokens/s = batch · 128 / wall). All variants
run interleaved in one process, median of ``--repeats`` rounds; CPU time is printed beside
wall time. Memory: each variant in a fresh child process; ``peak_rss_mib`` is its VmHWM
over its whole life (import, compile, runs), ``run_extra_mib`` the peak above the resident
set during one warm prefill + batch-8 decode (VmHWM reset through ``/proc/self/clear_refs``);
on a GPU, ``jax`` memory stats' ``peak_bytes_in_use`` instead. ``weights_mib`` and
``cache_mib`` are the arrays' bytes.

``decode_int8_time_ratio`` = W8A8 decode time / fp32 decode time at batch 1 (target <= 0.9).

``width_pruned_speedup_vs_flops`` = (dense / width-pruned forward time at batch 64) / (dense /
pruned FLOPs) of the same GPT pruned to about half its parameters (:func:`width_pruned`;
target >= 0.8).

``kv_bpb_*``: valid bits per byte of a 2-layer width-128 GPT trained on fortunes (600 steps),
decoded through the float, int8, int4 or fp8 KV cache (:func:`kv_bpb`); ``lowp_bpb_*``: the
same model's bpb with its linear kernels converted (bf16, W8A8, fp8, W8A16, W4A16 g64).

Run: ``python benchmarks/transformer.py`` (``--quick``: 64-token prefill, 16 new tokens,
3 repeats, 150 training steps, no memory children; ``--no-bpb``, ``--no-memory`` skip parts;
``--only width_pruned`` runs that figure alone).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402
from harness import emit, interleaved, log  # noqa: E402
from quant import _amx  # noqa: E402  (AMX-INT8 present / granted: XLA's int8 dot uses it)

from jaxcomp.models.gpt import GPT, generate  # noqa: E402
from jaxcomp.models.kv_cache import cache_bytes  # noqa: E402
from jaxcomp.quant.lowp import MODES, convert_gpt, lowp_dense, quantize_kernel, weight_bytes  # noqa: E402

VARIANTS = {"fp32": ("fp32", None), "bf16": ("bf16", None), "w8a8": ("w8a8", None),
            "w4a16": ("w4a16", None), "kv_int8": ("fp32", "int8")}
MiB = 2 ** 20


def build(name: str, prompt_len: int, new: int):
    mode, kv = VARIANTS[name]
    gpt = GPT(num_layers=4, width=256, num_heads=4, context=prompt_len + new,
              rngs=nnx.Rngs(0))
    return convert_gpt(gpt, mode, group_size=64), kv


@jax.jit(static_argnums=(0, 3))
def _prefill(graphdef, state, tokens, kv):
    gpt = nnx.merge(graphdef, state)
    cache = gpt.init_cache(tokens.shape[0], tokens.shape[1], kv_quant=kv)
    logits, cache = gpt.forward(tokens, cache, 0)
    return logits[:, -1], cache


def runners(name: str, prefill_len: int, new: int):
    model, kv = build(name, prefill_len, new)
    graphdef, state = nnx.split(model)
    toks = jax.random.randint(jax.random.key(1), (8, prefill_len), 0, 256)

    def prefill():
        jax.block_until_ready(_prefill(graphdef, state, toks, kv))

    def decode(b):
        return lambda: jax.block_until_ready(generate(model, toks[:b, :1], new, kv_quant=kv))

    return model, kv, prefill, decode(1), decode(8)


def int8_dot_kind(rows: int) -> str:
    """The operand types of the dot XLA compiles for a W8A8 (rows, 256) x (256, 256) matmul:
    ``s8 x s8`` when it runs as an int8 dot, ``s32``/``f32`` when the backend upcasts."""
    parts = quantize_kernel(jax.random.normal(jax.random.key(0), (256, 256)), "w8a8")
    hlo = jax.jit(lambda x, p: lowp_dense(x, p, "w8a8")).lower(
        jnp.ones((rows, 256)), parts).compile().as_text()
    types = dict(re.findall(r"(%[\w.-]+) = (\w+)\[", hlo))
    found = []
    for ln in hlo.splitlines():
        m = re.match(r"\s*(%[\w.-]+) = (\w+)\[\S* (?:dot|fusion)\((%[\w.-]+), (%[\w.-]+)", ln)
        if m and (" dot(" in ln or "ynn" in m.group(1)):
            kind = "xnnpack fusion" if "ynn" in m.group(1) else "dot"
            found.append(f"{kind} {types.get(m.group(3))} x {types.get(m.group(4))} -> "
                         f"{m.group(2)}")
    return "; ".join(found) or "no dot found"


def child(name: str, prefill_len: int, new: int) -> None:
    import ctypes

    def status(key):
        with open("/proc/self/status") as f:
            return next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith(key + ":"))

    model, kv, prefill, _, dec8 = runners(name, prefill_len, new)
    prefill(), dec8()                                     # compile
    gpu = jax.default_backend() != "cpu"
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")                                      # VmHWM := VmRSS
    base = status("VmRSS")
    prefill(), dec8()
    extra = status("VmHWM") - base
    out = {"peak_rss_mib": None, "run_extra_mib": round(extra / MiB, 2)}
    if gpu:
        stats = jax.devices()[0].memory_stats() or {}
        out["device_peak_mib"] = round(stats.get("peak_bytes_in_use", 0) / MiB, 2)
    out["weights_mib"] = round(weight_bytes(model) / MiB, 3)
    cache = model.init_cache(8, prefill_len, kv_quant=kv)
    out["cache_mib"] = round(cache_bytes(cache) / MiB, 3)
    out["peak_rss_mib"] = round(status("VmHWM") / MiB, 1)
    print(json.dumps(out))


def kv_bpb(quick: bool) -> None:
    """Valid bits per byte of a small GPT trained on fortunes, decoded through a float or
    quantized KV cache (teacher-forced: first half of each window prefilled, then one byte
    per step; every position scored) beside the full forward pass's bpb."""
    import optax

    from jaxcomp.data.text import fortunes
    from jaxcomp.models import get_model
    from jaxcomp.models.gpt import as_module
    from jaxcomp.models.kv_cache import decode_bpb
    from jaxcomp.models.lm import bits_per_byte, train_lm

    ctx, steps, nwin = 64, (150 if quick else 600), (32 if quick else 256)
    data = fortunes()
    model = get_model("gpt", input_shape=(ctx,), num_layers=2, width=128, num_heads=4,
                      context=ctx)
    state, _ = train_lm(model, data, optax.adam(3e-3), steps=steps, batch_size=32, context=ctx)
    win = data.eval_windows(ctx, "valid", nwin)
    full = bits_per_byte(model, state.params, state.model_state, win, context=ctx)
    gpt = as_module(model, state.params, state.model_state)
    for kv in (None, "int8", "int4", "fp8"):
        for scale in (("token",) if kv is None else ("token", "head")):
            bpb = decode_bpb(gpt, win["x"], win["y"], kv_quant=kv, kv_scale=scale,
                             prefill=ctx // 2)
            emit(f"kv_bpb_{kv or 'fp32'}_{scale}", round(bpb, 4), "bits/byte", None, ok=True,
                 full_forward_bpb=round(full, 4), delta=round(bpb - full, 4),
                 train_steps=steps, windows=len(win["x"]))
    for mode in MODES:                       # converted weights, float cache, full forward
        bpb = decode_bpb(convert_gpt(gpt, mode, group_size=64), win["x"], win["y"], prefill=ctx)
        emit(f"lowp_bpb_{mode}", round(bpb, 4), "bits/byte", None, ok=True,
             full_forward_bpb=round(full, 4), delta=round(bpb - full, 4))


def _flops(compiled) -> float:
    cost = compiled.cost_analysis()
    return float((cost[0] if isinstance(cost, list | tuple) else cost)["flops"])


def analytic_flops(cfg: dict, batch: int, t: int) -> int:
    """Multiply-adds x 2 of a GPT forward: the linear layers and the head per token, plus
    the (full, then masked) ``T x T`` attention scores and mixing."""
    d, hd, h, k = cfg["width"], cfg["head_dim"], cfg["num_heads"], cfg["num_kv_heads"]
    mats = 2 if cfg["mlp"] == "gelu" else 3
    per_block = 2 * d * h * hd + 2 * d * k * hd + mats * d * cfg["mlp_hidden"]
    linear = 2 * batch * t * (cfg["num_layers"] * per_block + d * cfg["vocab_size"])
    return linear + cfg["num_layers"] * batch * 4 * t * t * h * hd


def width_pruned(quick: bool, repeats: int) -> None:
    """``width_pruned_speedup_vs_flops``: the 4-layer width-256 GPT (4 heads, GELU 1024)
    width-pruned to about half its parameters (heads 4->2, mlp_hidden 1024->576, width
    256->224; magnitude importance: speed does not depend on which parts go) by
    :mod:`jaxcomp.prune.transformer`; jitted forward of (64, context) tokens, dense and
    pruned interleaved, medians; (speed-up) / (FLOP reduction), FLOPs from XLA's cost
    analysis of the two compiled programs (an analytic count is printed beside it)."""
    from jaxcomp.models import get_model
    from jaxcomp.prune import transformer as tp

    ctx, batch = (64 if quick else 256), 64
    model = get_model("gpt", input_shape=(ctx,), num_layers=4, width=256, num_heads=4,
                      context=ctx)
    params, ms = model.init(jax.random.key(0), None)
    imp = tp.importance(model, params, None, method="magnitude")
    small = tp.prune_width(model, params, imp, num_heads=2, mlp_hidden=576, width=224)
    x = jax.random.randint(jax.random.key(1), (batch, ctx), 0, 256)
    variants = {"dense": (model, params, ms, tp.gpt_config(model)),
                "pruned": (small.model, small.params, small.model_state, small.config)}
    fns, xla, ana = {}, {}, {}
    for name, (m, p, s, cfg) in variants.items():
        c = jax.jit(lambda p, s, x, m=m: m.apply(p, s, x)[0]).lower(p, s, x).compile()
        xla[name], ana[name] = _flops(c), analytic_flops(cfg, batch, ctx)
        fns[name] = lambda c=c, p=p, s=s: jax.block_until_ready(c(p, s, x))
        fns[name]()                                     # warm
    log(f"width-pruned GPT: load average {os.getloadavg()}, batch {batch} x {ctx}, "
        f"{repeats} repeats")
    t = interleaved(fns, repeats)
    flop_red = xla["dense"] / xla["pruned"]
    wall, cpu = (t["dense"][k] / t["pruned"][k] for k in ("wall", "cpu"))
    value = wall / flop_red
    emit("width_pruned_speedup_vs_flops", round(value, 3), "ratio", 0.8, ok=value >= 0.8,
         speedup_wall=round(wall, 3), speedup_cpu=round(cpu, 3),
         by_cpu_time=round(cpu / flop_red, 3), flop_reduction_xla=round(flop_red, 3),
         flop_reduction_analytic=round(ana["dense"] / ana["pruned"], 3),
         dense_wall_s=round(t["dense"]["wall"], 4), pruned_wall_s=round(t["pruned"]["wall"], 4),
         dense_cpu_s=round(t["dense"]["cpu"], 4), pruned_cpu_s=round(t["pruned"]["cpu"], 4),
         params_before=small.params_before, params_after=small.params_after,
         pruned_config={k: small.config[k] for k in ("num_heads", "num_kv_heads", "head_dim",
                                                      "width", "mlp_hidden")},
         batch=batch, context=ctx, repeats=repeats, backend=jax.default_backend(),
         load_average=[round(v, 2) for v in os.getloadavg()])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--no-bpb", action="store_true")
    ap.add_argument("--only", choices=("all", "width_pruned"), default="all",
                    help="width_pruned: only width_pruned_speedup_vs_flops")
    a = ap.parse_args()
    prefill_len, new = (64, 16) if a.quick else (256, 128)
    if a.child:
        return child(a.child, prefill_len, new)
    repeats = a.repeats or (3 if a.quick else 7)
    if a.only == "width_pruned":
        return width_pruned(a.quick, a.repeats or (3 if a.quick else 5))
    if not a.no_bpb:
        kv_bpb(a.quick)
    log(f"backend {jax.default_backend()}, load average {os.getloadavg()}, "
        f"prefill (8, {prefill_len}), decode {new} new tokens, {repeats} repeats")
    run = {n: runners(n, prefill_len, new) for n in VARIANTS}
    for n, (_, _, p, d1, d8) in run.items():             # compile everything first
        p(), d1(), d8()
        log(f"compiled {n}")
    groups = {"prefill": (2, 8 * prefill_len), "decode_b1": (3, new), "decode_b8": (4, 8 * new)}
    times = {}
    for g, (i, ntok) in groups.items():
        times[g] = interleaved({n: r[i] for n, r in run.items()}, repeats)
        for n, t in times[g].items():
            emit(f"{g}_tokens_per_s_{n}", round(ntok / t["wall"], 1), "tokens/s", None, ok=True,
                 wall_s=round(t["wall"], 4), cpu_s=round(t["cpu"], 4))
    ratio = times["decode_b1"]["w8a8"]["wall"] / times["decode_b1"]["fp32"]["wall"]
    emit("decode_int8_time_ratio", round(ratio, 3), "ratio", 0.9,
         w4a16_ratio=round(times["decode_b1"]["w4a16"]["wall"]
                           / times["decode_b1"]["fp32"]["wall"], 3),
         xla_dot_rows1=int8_dot_kind(1), xla_dot_rows8=int8_dot_kind(8),
         xla_dot_rows2048=int8_dot_kind(2048), backend=jax.default_backend(),
         load_average=[round(x, 2) for x in os.getloadavg()], **_amx())
    width_pruned(a.quick, repeats)
    if a.no_memory or a.quick:
        return
    for n in VARIANTS:
        env = dict(os.environ, PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get(
            "PYTHONPATH", ""))
        res = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", n]
                             + (["--quick"] if a.quick else []),
                             capture_output=True, text=True, env=env, check=True)
        mem = json.loads(res.stdout.strip().splitlines()[-1])
        emit(f"peak_memory_{n}", mem["peak_rss_mib"], "MiB", None, ok=True, **mem)


if __name__ == "__main__":
    main()
