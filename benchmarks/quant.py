"""Quantization benchmarks (JSON lines on stdout; diagnostics on stderr).

* ``qat_step_ratio_cnn``: LeNet-5 train step (batch 128, Adam) with int8 weight
  (per-channel) + int8 activation fake-quant vs plain. Target ≤ 1.10.
* ``qat_step_ratio_mlp``: LeNet-300-100 train step (batch 128, Adam), int8 weights
  (per-channel) + int8 activations over fp32, in process CPU time (the machine is
  shared). Variants: jaxcomp's functional path (``act_quant`` + ``weight_quant`` in
  ``make_train_step``) against its fp32 step, and the drop-in module
  (``quantize_module``) in a plain hand-written step against the same step on the
  fp32 module; the value is the faster of the two. Target ≤ 1.05. Beside it
  (``handwritten_floor_ratio``, no target): the same fake-quant written by hand in a
  few lines with no jaxcomp code, over the plain step, in the same rounds; and
  ``qwix_ratio``: qwix's ``quantize_model`` (int8 weights and activations, dynamic
  ranges) in the same plain step, when qwix is installed (``pip install -e .[bench]``).
* ``qat_step_ratio_vs_qwix``: the same jaxcomp QAT step / qwix's QAT step
  (``QtProvider``, int8 weights and activations) on the same model. Target ≤ 1.0.
* ``minmax_per_channel_ratio`` (no target): per-channel min/max of a 4096x4096 kernel,
  ``minmax`` over the one variadic reduction it used to be (XLA:CPU runs a variadic
  reduction over a non-minor axis many times slower than two plain ones).
* ``int8_bytes_ratio`` / ``int4_bytes_ratio``: LeNet-300-100 fp32 vs integer
  export, bytes of the saved orbax directories. Targets ≥ 3.9 / ≥ 7.5.
* ``int8_sparse90_bytes_ratio``: the same model with 90% of each kernel pruned,
  fp32 dense vs sparse int8 export (bitmask + non-zero codes). No target.
* ``int8_forward_time_ratio``: LeNet-300-100 integer inference vs fp32 forward at
  batch 1024. Target ≤ 0.85. Beside it, the first layer's int8 dot / f32 dot in the
  same rounds and whether the process was granted AMX tile data: XLA:CPU's int8 dot
  (YNNPACK) uses AMX-INT8 where it is granted and is as slow as the f32 dot where it
  is not. ``int8_forward_time_ratio_no_amx`` (no target): the same in a child refused
  AMX (``--deny-amx``, a seccomp filter), as on a CPU without it.
  ``int8_forward_time_ratio_lenet5`` (no target).
* ``int8_export_peak_memory_ratio``: a 100M-parameter fp32 tree exported to int8
  in a subprocess: ``1 + (peak RSS during the export - RSS before it) / fp32 bytes``,
  the peak read from the child's own ``VmHWM`` (reset before the export), not
  ``ru_maxrss``, which a child inherits from its parent across exec. Target ≤ 1.3.

Run: ``python benchmarks/quant.py`` (``--only NAME`` to run one group).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from harness import emit, interleaved, log  # noqa: E402

from jaxcomp.models import get_model  # noqa: E402
from jaxcomp.quant.act import act_quant  # noqa: E402
from jaxcomp.quant.export import dir_bytes, export_int, int_bytes, save  # noqa: E402
from jaxcomp.quant.intinfer import int_dense, int_model  # noqa: E402
from jaxcomp.quant.ptq import layer_rules  # noqa: E402
from jaxcomp.quant.transform import weight_quant  # noqa: E402
from jaxcomp.train import create_state, make_train_step  # noqa: E402

STEPS = 10
DENY_AMX = False


def _batch(n, shape=(28, 28, 1), seed=0):
    rng = np.random.default_rng(seed)
    return {"x": jnp.asarray(rng.random((n, *shape), np.float32)),
            "y": jnp.asarray(rng.integers(0, 10, n).astype(np.int32))}


def _qwix_model():
    """LeNet-5 quantized by qwix QAT (int8 weights and activations), or a reason string."""
    try:
        import qwix

        from jaxcomp.flax import from_linen
        from jaxcomp.models import LeNet5

        rule = qwix.QtRule(module_path=".*", weight_qtype=jnp.int8, act_qtype=jnp.int8)
        qmod = qwix.quantize_model(LeNet5("classic", 10), qwix.QtProvider([rule]))
        return from_linen(qmod, "lenet5_qwix")
    except Exception as e:  # pragma: no cover - depends on the installed qwix
        return f"{type(e).__name__}: {e}"


def bench_qat() -> None:
    batch = _batch(128)
    tx = optax.adam(1e-3)
    base = get_model("lenet5", input_shape=(28, 28, 1))
    params, _ = base.init(jax.random.key(0), batch["x"][:1])
    aq = act_quant(base, layer_rules(params, 8), 8)
    _, ms_aq = aq.model.init(jax.random.key(0), batch["x"][:1])
    variants = {"plain": (base, None, {}), "jaxcomp": (aq.model, weight_quant(8), ms_aq)}
    qw = _qwix_model()
    reason = None
    if isinstance(qw, str):
        reason = qw
    else:
        try:
            qp, qms = qw.init(jax.random.key(0), batch["x"][:1])
            variants["qwix"] = (qw, None, qms)
            params_q = qp
        except Exception as e:  # pragma: no cover
            reason = f"{type(e).__name__}: {e}"
    states, steps = {}, {}
    for name, (model, t, ms) in variants.items():
        steps[name] = make_train_step(model, tx, t)
        p = jax.tree.map(jnp.copy, params_q if name == "qwix" else params)
        states[name] = create_state(p, ms, tx, key=jax.random.key(1), transform=t)
        try:
            states[name], m = steps[name](states[name], batch)
            m["loss"].block_until_ready()
        except Exception as e:  # pragma: no cover
            if name != "qwix":
                raise
            reason = f"{type(e).__name__}: {e}"
    if reason and "qwix" in variants:
        variants.pop("qwix")
        steps.pop("qwix")
        states.pop("qwix")

    def runner(name):
        def run():
            s = states[name]
            for _ in range(STEPS):
                s, m = steps[name](s, batch)
            m["loss"].block_until_ready()
            states[name] = s
        return run

    t = interleaved({k: runner(k) for k in steps}, repeats=7)
    ms_per = {k: round(1e3 * v["wall"] / STEPS, 3) for k, v in t.items()}
    log("step ms", ms_per)
    ratio = t["jaxcomp"]["wall"] / t["plain"]["wall"]
    emit("qat_step_ratio_cnn", round(ratio, 4), "ratio", 1.10,
         cpu_ratio=round(t["jaxcomp"]["cpu"] / t["plain"]["cpu"], 4), step_ms=ms_per)
    if "qwix" in t:
        r = t["jaxcomp"]["wall"] / t["qwix"]["wall"]
        emit("qat_step_ratio_vs_qwix", round(r, 4), "ratio", 1.0,
             cpu_ratio=round(t["jaxcomp"]["cpu"] / t["qwix"]["cpu"], 4), step_ms=ms_per,
             note="qwix QtProvider int8 weights+activations (dynamic ranges, real int8 "
                  "dot_general); jaxcomp: static EMA activation ranges, fake-quant")
    else:
        emit("qat_step_ratio_vs_qwix", None, "ratio", 1.0, ok=False, reason=reason)


def _plain_step(forward, tx):
    """A user's plain step over ``(params, opt_state, extra)``: ``forward(params, extra, x)``
    gives ``(logits, new extra)`` (quant_stats, activation ranges: carried like
    batch_stats)."""
    def loss_fn(p, extra, x, y):
        logits, extra = forward(p, extra, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), extra

    def step(state, batch):
        p, opt, extra = state
        (loss, extra), g = jax.value_and_grad(loss_fn, has_aux=True)(p, extra, batch["x"],
                                                                     batch["y"])
        upd, opt = tx.update(g, opt, p)
        return (optax.apply_updates(p, upd), opt, extra), {"loss": loss}

    return jax.jit(step, donate_argnums=(0,))


def _plain_linen_step(module, tx):
    """A user's plain linen step: params + ``quant_stats`` carried like batch_stats."""
    def forward(p, extra, x):
        if extra:
            logits, upd = module.apply({"params": p, **extra}, x, mutable=list(extra))
            return logits, dict(upd)
        return module.apply({"params": p}, x), {}

    return _plain_step(forward, tx)


def _handwritten_qat_step(tx, n_layers):
    """The floor reference: a minimal fake-quant LeNet-300-100 step written by hand, no
    jaxcomp code (per-channel absmax int8 weights, per-tensor EMA int8 activations,
    straight-through gradients), carrying its ranges as ``(lo, hi, count)`` per layer."""
    @jax.custom_vjp
    def fq(v, s, z, lo, hi):
        return (jnp.clip(jnp.round(v / s + z), lo, hi) - z) * s

    def fq_fwd(v, s, z, lo, hi):
        return fq(v, s, z, lo, hi), (v, s, z, lo, hi)

    def fq_bwd(r, g):
        v, s, z, lo, hi = r
        inside = (v >= (lo - z) * s) & (v <= (hi - z) * s)
        return (g * inside, *(jnp.zeros_like(a) for a in (s, z, lo, hi)))

    fq.defvjp(fq_fwd, fq_bwd)

    def forward(p, ranges, x):
        x = x.reshape(x.shape[0], -1)
        new = []
        for i in range(n_layers):
            k, b = p[f"Dense_{i}"]["kernel"], p[f"Dense_{i}"]["bias"]
            lo, hi, n = ranges[i]
            xs = jax.lax.stop_gradient(x)
            m = jnp.where(n > 0, 0.9, 0.0)
            lo, hi = m * lo + (1 - m) * jnp.min(xs), m * hi + (1 - m) * jnp.max(xs)
            new.append((lo, hi, n + 1))
            lo0, hi0 = jnp.minimum(lo, 0.0), jnp.maximum(hi, 0.0)
            sx = jnp.where(hi0 > lo0, (hi0 - lo0) / 255.0, 1.0)
            zx = jnp.clip(jnp.round(-128.0 - lo0 / sx), -128.0, 127.0)
            ks = jax.lax.stop_gradient(k)
            sw = jnp.maximum(-jnp.min(ks, 0, keepdims=True), jnp.max(ks, 0, keepdims=True))
            sw = jnp.where(sw > 0, sw / 127.0, 1.0)
            x = fq(x, sx, zx, -128.0, 127.0) @ fq(k, sw, 0.0, -127.0, 127.0) + b
            x = jax.nn.relu(x) if i < n_layers - 1 else x
        return x, new

    ranges = [(jnp.zeros(()), jnp.zeros(()), jnp.zeros((), jnp.int32)) for _ in range(n_layers)]
    return _plain_step(forward, tx), ranges


def bench_qat_mlp() -> None:
    from jaxcomp.models import MLP
    from jaxcomp.quant.dropin import quantize_module

    batch = _batch(128)
    tx = optax.adam(1e-3)
    base = get_model("lenet300", input_shape=(28, 28, 1))
    params, _ = base.init(jax.random.key(0), batch["x"][:1])
    aq = act_quant(base, layer_rules(params, 8), 8)
    _, ms_aq = aq.model.init(jax.random.key(0), batch["x"][:1])
    steps, states = {}, {}
    for name, (model, t, ms) in {"fp32": (base, None, {}),
                                 "functional": (aq.model, weight_quant(8), ms_aq)}.items():
        steps[name] = make_train_step(model, tx, t)
        states[name] = create_state(jax.tree.map(jnp.copy, params), ms, tx,
                                    key=jax.random.key(1), transform=t)
    q = quantize_module(MLP(), ".*")
    stats = q.init(jax.random.key(0), batch["x"][:1])["quant_stats"]
    for name, (module, extra) in {"fp32_plain": (MLP(), {}),
                                  "dropin": (q, {"quant_stats": stats})}.items():
        steps[name] = _plain_linen_step(module, tx)
        p = jax.tree.map(jnp.copy, params)
        states[name] = (p, tx.init(p), jax.tree.map(jnp.copy, extra))
    steps["handwritten"], ranges = _handwritten_qat_step(tx, 3)
    p = jax.tree.map(jnp.copy, params)
    states["handwritten"] = (p, tx.init(p), ranges)
    try:  # qwix's QAT module (int8 weights and activations) in the same plain step
        import qwix

        rule = qwix.QtRule(module_path=".*", weight_qtype=jnp.int8, act_qtype=jnp.int8)
        steps["qwix"] = _plain_linen_step(qwix.quantize_model(MLP(), qwix.QtProvider([rule])),
                                          tx)
        p = jax.tree.map(jnp.copy, params)
        states["qwix"] = (p, tx.init(p), {})
    except ImportError as e:  # pragma: no cover - the bench extra is not installed
        log("qwix not measured:", e)
    for name in steps:
        states[name], m = steps[name](states[name], batch)
        m["loss"].block_until_ready()

    def runner(name):
        def run():
            s = states[name]
            for _ in range(4 * STEPS):
                s, m = steps[name](s, batch)
            m["loss"].block_until_ready()
            states[name] = s
        return run

    t = interleaved({k: runner(k) for k in steps}, repeats=11)
    ms_per = {k: round(1e3 * v["wall"] / (4 * STEPS), 3) for k, v in t.items()}
    cpu = {"functional": t["functional"]["cpu"] / t["fp32"]["cpu"],
           "dropin": t["dropin"]["cpu"] / t["fp32_plain"]["cpu"]}
    wall = {"functional": t["functional"]["wall"] / t["fp32"]["wall"],
            "dropin": t["dropin"]["wall"] / t["fp32_plain"]["wall"]}
    best = min(cpu, key=cpu.get)
    floor = t["handwritten"]["cpu"] / t["fp32_plain"]["cpu"]
    qwix_ratio = t["qwix"]["cpu"] / t["fp32_plain"]["cpu"] if "qwix" in t else None
    log("mlp step ms", ms_per, "cpu ratios", cpu, "wall ratios", wall, "floor", floor,
        "qwix", qwix_ratio)
    emit("qat_step_ratio_mlp", round(cpu[best], 4), "ratio", 1.05, path=best,
         handwritten_floor_ratio=round(floor, 4),
         qwix_ratio=None if qwix_ratio is None else round(qwix_ratio, 4),
         cpu_ratios={k: round(v, 4) for k, v in cpu.items()},
         wall_ratios={k: round(v, 4) for k, v in wall.items()}, step_ms=ms_per,
         load_avg=[round(v, 2) for v in os.getloadavg()],
         note="process CPU time, interleaved, median of 11 rounds of 40 steps")


def bench_bytes() -> None:
    from jaxcomp.data import fashion_mnist
    from jaxcomp.train import fit

    ds = fashion_mnist()
    model = get_model("lenet300", input_shape=(28, 28, 1))
    # trained weights (2 epochs): what is stored at rest; both formats are compressed by
    # orbax, so the weight distribution matters
    res = fit(model, ds, optax.adam(1e-3), epochs=2, batch_size=128, seed=0, progress=False)
    params = jax.tree.map(np.asarray, res.state.params)
    raw = sum(x.nbytes for x in jax.tree.leaves(params))
    with tempfile.TemporaryDirectory() as d:
        save(f"{d}/fp32", params)
        fp32 = dir_bytes(f"{d}/fp32")
        for bits, target in ((8, 3.9), (4, 7.5)):
            save(f"{d}/int{bits}", export_int(params, bits))
            b = dir_bytes(f"{d}/int{bits}")
            emit(f"int{bits}_bytes_ratio", round(fp32 / b, 4), "ratio", target,
                 ok=fp32 / b >= target, fp32_bytes=fp32, int_bytes=b,
                 raw_fp32_ratio=round(raw / b, 4),
                 note="biases stay fp32; per-channel fp32 scales; orbax metadata included")
        # pruned then quantized (the pipeline sweep's artifact): 90% of each kernel's
        # smallest weights zeroed; dense int8 codes vs bitmask + non-zero int8 codes
        pruned = jax.tree.map(np.array, params)
        for layer in pruned.values():
            k = layer["kernel"]
            k[np.abs(k) < np.quantile(np.abs(k), 0.9)] = 0.0
        sizes = {}
        for name, tree in (("dense", export_int(pruned, 8)),
                           ("sparse", export_int(pruned, 8, sparse=True))):
            save(f"{d}/pruned_{name}", tree)
            sizes[name] = (dir_bytes(f"{d}/pruned_{name}"), int_bytes(tree))
        from jaxcomp.prune import storage

        enc = storage.encode_tree(pruned, "bitmask")
        sparse_fp32 = storage.tree_nbytes(enc)
        ratio = fp32 / sizes["sparse"][0]
        emit("int8_sparse90_bytes_ratio", round(ratio, 3), "ratio", None, ok=True,
             fp32_bytes=fp32, int8_sparse_bytes=sizes["sparse"][0],
             int8_dense_bytes=sizes["dense"][0],
             in_memory={"int8_sparse": sizes["sparse"][1], "int8_dense": sizes["dense"][1],
                        "fp32_bitmask": sparse_fp32},
             note="LeNet-300-100, 90% of each kernel pruned; at rest = saved orbax "
                  "directory (zarr compresses the dense codes' zeros too); in_memory = "
                  "array bytes, what the sweep ledger's int_bytes reports")


def _forward_ratio(name: str, shape, batch: int) -> dict:
    model = get_model(name, input_shape=shape)
    x = _batch(batch, shape)["x"]
    params, ms = model.init(jax.random.key(0), x[:1])
    aq = act_quant(model, layer_rules(params, 8), 8)
    _, ms_aq = aq.model.init(jax.random.key(0), x[:1])
    ms_aq = aq.calibrate(params, ms_aq, [x])
    im = int_model(model, export_int(params, 8), ms_aq["act_quant"])
    iw = im.init(None, None)[0]
    iw = jax.tree.map(jnp.asarray, iw)
    f32 = jax.jit(lambda p, xb: model.apply(p, ms, xb)[0])
    i8 = jax.jit(lambda w, xb: im.apply(w, {}, xb)[0])
    reps = 20 if name == "lenet300" else 3

    def run(fn, *args):
        fn(*args).block_until_ready()

        def go():
            for _ in range(reps):
                out = fn(*args)
            out.block_until_ready()
        return go

    variants = {"fp32": run(f32, params, x), "int8": run(i8, iw, x)}
    if name == "lenet300":
        # the first layer's dot alone, f32 vs int8 codes (int32 accumulation), in the same
        # rounds: how much of the ratio XLA:CPU's int8 dot itself allows on this machine
        x2 = x.reshape(batch, -1)
        qx = jnp.asarray(np.random.default_rng(1).integers(-127, 128, x2.shape), jnp.int8)
        variants["dot_fp32"] = run(jax.jit(jnp.matmul), x2, params["Dense_0"]["kernel"])
        variants["dot_int8"] = run(jax.jit(int_dense), qx, iw["Dense_0"]["q"])
    t = interleaved(variants, repeats=7)
    out = {"ratio": t["int8"]["wall"] / t["fp32"]["wall"],
           "cpu_ratio": t["int8"]["cpu"] / t["fp32"]["cpu"],
           "fp32_ms": 1e3 * t["fp32"]["wall"] / reps, "int8_ms": 1e3 * t["int8"]["wall"] / reps}
    if "dot_int8" in t:
        out["dot_ratio"] = t["dot_int8"]["wall"] / t["dot_fp32"]["wall"]
        out["dot_cpu_ratio"] = t["dot_int8"]["cpu"] / t["dot_fp32"]["cpu"]
    return {k: round(v, 4) for k, v in out.items()}


def _amx() -> dict:
    """Whether the CPU has AMX-INT8 and whether this process was granted its tile data
    (XLA:CPU's int8 dot, through YNNPACK, uses AMX where it is granted)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
        perm = ctypes.c_uint64(0)  # arch_prctl(ARCH_GET_XCOMP_PERM): bit 18 = AMX tile data
        ok = ctypes.CDLL(None).syscall(158, 0x1022, ctypes.byref(perm)) == 0
        return {"cpu_amx_int8": "amx_int8" in flags, "cpu_avx512_vnni": "avx512_vnni" in flags,
                "amx_granted": bool(ok and perm.value & (1 << 18))}
    except (OSError, AttributeError):  # pragma: no cover - not Linux x86-64
        return {}


def _deny_amx() -> None:
    """Refuse AMX tile data to this process (seccomp: ARCH_REQ_XCOMP_PERM -> EPERM, all
    threads), so the int8 dot runs the kernels of a CPU without AMX. Linux x86-64."""
    class Insn(ctypes.Structure):
        _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                    ("k", ctypes.c_uint32)]

    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(Insn))]

    ld, jeq, ret = 0x20, 0x15, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, BPF_RET|K
    insns = [Insn(ld, 0, 0, 4), Insn(jeq, 0, 5, 0xC000003E),  # arch == x86-64
             Insn(ld, 0, 0, 0), Insn(jeq, 0, 3, 158),  # nr == arch_prctl
             Insn(ld, 0, 0, 16), Insn(jeq, 0, 1, 0x1023),  # ARCH_REQ_XCOMP_PERM
             Insn(ret, 0, 0, 0x00050001), Insn(ret, 0, 0, 0x7FFF0000)]  # EPERM / allow
    prog = Prog(len(insns), (Insn * len(insns))(*insns))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(38, 1, 0, 0, 0) != 0 or libc.syscall(317, 1, 1, ctypes.byref(prog)) != 0:
        raise OSError(ctypes.get_errno(), "seccomp filter refused")  # NO_NEW_PRIVS; TSYNC


def bench_forward() -> None:
    r = _forward_ratio("lenet300", (28, 28, 1), 1024)
    if DENY_AMX:
        emit("int8_forward_time_ratio_no_amx", r.pop("ratio"), "ratio", None, ok=True, **r,
             **_amx(), note="AMX tile data refused to the process (seccomp), as on a CPU "
                            "without AMX; dot_ratio: the first layer's int8 dot / f32 dot")
        return
    emit("int8_forward_time_ratio", r.pop("ratio"), "ratio", 0.85, **r, **_amx(),
         note="dot_ratio: the first layer's int8 dot / f32 dot in the same rounds")
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--only", "forward",
                          "--deny-amx"], capture_output=True, text=True, timeout=900)
    if out.returncode == 0 and out.stdout.strip():
        print(out.stdout.strip().splitlines()[-1], flush=True)
    else:
        log("no-AMX forward not measured:", out.stderr[-300:])
    r = _forward_ratio("lenet5", (28, 28, 1), 1024)
    emit("int8_forward_time_ratio_lenet5", r.pop("ratio"), "ratio", None, ok=True, **r,
         note="no target: XLA on CPU upcasts int8 convolutions")


# The child is a fresh interpreter, but Linux keeps resource usage across execve: its
# ru_maxrss starts at the parent's peak RSS (after the other groups, 1-2 GB), which made
# the figure depend on what ran before it. The child reads its own peak (VmHWM, reset to
# the current RSS right before the export through /proc/self/clear_refs) instead.
_MEM_CHILD = r"""
import ctypes, json, resource, numpy as np, jax
from jaxcomp.quant.export import export_int

def status(key):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith(key + ":"))

def extra_peak(tree):
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # freed heap pages out of the baseline RSS
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    base = status("VmRSS")
    q = export_int(tree, 8)
    return status("VmHWM") - base, q

inherited = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
export_int({"w": np.ones((256, 256), np.float32)}, 8)  # compile/warm up
rng = np.random.default_rng(0)
tree = {f"layer_{i}": {"kernel": rng.standard_normal((10000, 1000), dtype=np.float32),
                       "bias": np.zeros(1000, np.float32)} for i in range(10)}
fp32 = sum(l["kernel"].nbytes + l["bias"].nbytes for l in tree.values())
extra, q = extra_peak(tree)  # first export of these shapes: compiles the scale function
int_bytes = sum(v["kernel"]["q"].nbytes for v in q.values())
del q
extra_warm, _ = extra_peak(tree)
for layer in tree.values():  # the same tree as jax arrays (trained params), one at a time
    for k in layer:
        layer[k] = jax.device_put(layer[k]).block_until_ready()
extra_jax, _ = extra_peak(tree)
print(json.dumps({"fp32": fp32, "extra": extra, "extra_warm": extra_warm,
                  "extra_jax": extra_jax, "int_bytes": int_bytes,
                  "inherited_maxrss": inherited}))
"""


def bench_memory() -> None:
    out = subprocess.run([sys.executable, "-c", _MEM_CHILD], capture_output=True, text=True,
                         timeout=900)
    if out.returncode != 0:
        emit("int8_export_peak_memory_ratio", None, "ratio", 1.3, ok=False,
             reason=out.stderr[-500:])
        return
    d = json.loads(out.stdout.strip().splitlines()[-1])
    mb = 2 ** 20
    emit("int8_export_peak_memory_ratio", round(1 + d["extra"] / d["fp32"], 4), "ratio", 1.3,
         fp32_mb=round(d["fp32"] / mb, 1), extra_peak_mb=round(d["extra"] / mb, 1),
         int8_mb=round(d["int_bytes"] / mb, 1),
         warm_ratio=round(1 + d["extra_warm"] / d["fp32"], 4),
         jax_leaves_ratio=round(1 + d["extra_jax"] / d["fp32"], 4),
         child_inherited_maxrss_mb=round(d["inherited_maxrss"] / mb, 1),
         note="100M params; 1 + (peak RSS during export - RSS before it) / fp32 bytes, "
              "peak = the child's VmHWM reset before the export (ru_maxrss is inherited "
              "across exec from the parent); int8 output itself is 0.25; jax_leaves_ratio: "
              "the same tree as jax arrays")


def bench_minmax() -> None:
    """Per-channel min/max of a 4096x4096 kernel (axis 0 reduced): ``minmax`` (two plain
    reductions) over one variadic reduction (its former form)."""
    from jaxcomp.quant.uniform import minmax

    w = jnp.asarray(np.random.default_rng(0).standard_normal((4096, 4096), np.float32))
    inf = jnp.array(jnp.inf, w.dtype)
    variadic = jax.jit(lambda x: jax.lax.reduce(
        (x, x), (inf, -inf), lambda a, b: (jnp.minimum(a[0], b[0]), jnp.maximum(a[1], b[1])),
        (0,)))
    ours = jax.jit(lambda x: minmax(x, axis=1))
    for a, b in zip(jax.tree.leaves(ours(w)), jax.tree.leaves(variadic(w)), strict=True):
        np.testing.assert_array_equal(np.asarray(a).ravel(), np.asarray(b).ravel())

    def runner(fn):
        def run():
            for _ in range(5):
                r = fn(w)
            jax.block_until_ready(r)
        return run

    t = interleaved({"minmax": runner(ours), "variadic": runner(variadic)}, repeats=7)
    emit("minmax_per_channel_ratio", round(t["minmax"]["wall"] / t["variadic"]["wall"], 4),
         "ratio", None, ok=True, ms={k: round(1e3 * v["wall"] / 5, 2) for k, v in t.items()},
         note="4096x4096 f32, per output channel; equal results checked")


GROUPS = {"qat": bench_qat, "minmax": bench_minmax, "qat_mlp": bench_qat_mlp, "bytes": bench_bytes,
          "forward": bench_forward, "memory": bench_memory}


def main() -> None:
    global DENY_AMX
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=sorted(GROUPS), action="append")
    ap.add_argument("--deny-amx", action="store_true",
                    help="refuse AMX to this process (the forward group's no-AMX figure)")
    args = ap.parse_args()
    if args.deny_amx:
        _deny_amx()  # before the first computation: YNNPACK asks for AMX when it starts
        DENY_AMX = True
    for name in args.only or list(GROUPS):
        GROUPS[name]()


if __name__ == "__main__":
    main()
