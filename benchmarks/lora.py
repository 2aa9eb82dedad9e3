"""LoRA / QLoRA benchmark (JSON lines on stdout; diagnostics on stderr).

Model: the library GPT (``jaxcomp/models/gpt.py``), 4 layers, width 256, context 256,
batch 16 × 256 random byte tokens, ``lm_loss``. Adapters of rank 8 (alpha 16) on every
attention and MLP linear kernel (24 kernels).

* ``lora_step_ratio``: one jitted LoRA train step (``jaxcomp.train.make_train_step``
  with ``lora.transform()`` and ``lora.freeze_base(optax.adam)``) over the plain model's
  forward + backward step (``jax.value_and_grad`` of the loss over all params, same
  batch, no optimizer): interleaved rounds, median wall time (process CPU time beside
  it). Target ≤ 1.1. ``lora_step_ratio_vs_full_finetune`` divides by the plain model's
  full Adam train step instead, and ``qlora_step_ratio`` times the NF4-base step.
* ``qlora_base_bytes_ratio``: bytes of the NF4 (block 64) base in memory (packed codes
  + float32 absmax) / float32 bytes of the same 24 kernels; ``int4 g64`` beside it.
  Target ≤ 0.3.

Run: ``python benchmarks/lora.py [--repeats 7]``.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import optax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import emit, interleaved, log  # noqa: E402

from jaxcomp import lora  # noqa: E402
from jaxcomp.models import get_model  # noqa: E402
from jaxcomp.models.lm import lm_loss  # noqa: E402
from jaxcomp.train import create_state, make_train_step  # noqa: E402
from jaxcomp.train.state import own_copy  # noqa: E402

WHERE = r"blocks/.*/(attn|mlp)/.*/kernel"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    m = get_model("gpt", input_shape=(256,), num_layers=4, width=256, context=256)
    params, ms = m.init(jax.random.key(0), jnp.zeros((1, 256), jnp.int32))
    toks = jax.random.randint(jax.random.key(1), (16, 257), 0, 256)
    batch = {"x": toks[:, :-1], "y": toks[:, 1:]}

    def loss(p):
        return lm_loss(m.apply(p, ms, batch["x"], train=True)[0], batch)[0]

    fwd_bwd = jax.jit(jax.value_and_grad(loss))
    adam = optax.adam(1e-4)
    # the steps donate their state: each variant trains its own copy of the arrays
    full_step = make_train_step(m, adam, None, lm_loss)
    full = {"s": create_state(own_copy(params), ms, adam, key=jax.random.key(2))}

    lp = lora.init_params(params, 8, where=WHERE, key=jax.random.key(3), alpha=16.0)
    t = lora.transform()
    tx = lora.freeze_base(adam)
    lora_step = make_train_step(m, tx, t, lm_loss)
    lst = {"s": create_state(own_copy(lp), ms, tx, key=jax.random.key(2), transform=t)}

    qp, base = lora.quantize_base(lp, "nf4")
    qt = lora.transform(base)
    qlora_step = make_train_step(m, tx, qt, lm_loss)
    qst = {"s": create_state(own_copy(qp), ms, tx, key=jax.random.key(2), transform=qt)}

    def run(step, holder):
        def go():
            holder["s"], met = step(holder["s"], batch)
            jax.block_until_ready(met["loss"])
        return go

    variants = {"fwd_bwd": lambda: jax.block_until_ready(fwd_bwd(params)),
                "full_adam": run(full_step, full), "lora": run(lora_step, lst),
                "qlora": run(qlora_step, qst)}
    for fn in variants.values():  # compile
        fn()
    res = interleaved(variants, args.repeats)
    for k, v in res.items():
        log(f"{k}: wall {v['wall'] * 1e3:.1f} ms, cpu {v['cpu'] * 1e3:.1f} ms")
    ratio = res["lora"]["wall"] / res["fwd_bwd"]["wall"]
    emit("lora_step_ratio", round(ratio, 3), "ratio", 1.1,
         cpu_ratio=round(res["lora"]["cpu"] / res["fwd_bwd"]["cpu"], 3),
         lora_ms=round(res["lora"]["wall"] * 1e3, 1),
         fwd_bwd_ms=round(res["fwd_bwd"]["wall"] * 1e3, 1), repeats=args.repeats)
    emit("lora_step_ratio_vs_full_finetune",
         round(res["lora"]["wall"] / res["full_adam"]["wall"], 3), "ratio", 1.1,
         full_adam_ms=round(res["full_adam"]["wall"] * 1e3, 1))
    emit("qlora_step_ratio", round(res["qlora"]["wall"] / res["fwd_bwd"]["wall"], 3), "ratio",
         None, ok=True, qlora_ms=round(res["qlora"]["wall"] * 1e3, 1))
    ratio_q = base.nbytes / base.fp32_bytes
    _, base4 = lora.quantize_base(lp, "int4", group_size=64)
    emit("qlora_base_bytes_ratio", round(ratio_q, 4), "ratio", 0.3,
         int4_g64_ratio=round(base4.nbytes / base4.fp32_bytes, 4), kernels=len(base.meta),
         base_bytes=base.nbytes, fp32_bytes=base.fp32_bytes)
    n = lora.count_params(lp)
    log(f"trainable {n['trainable']} of {n['trainable'] + n['frozen']} values; optimizer "
        f"state {lora.tree_bytes(lst['s'].opt_state)} B (LoRA) vs "
        f"{lora.tree_bytes(full['s'].opt_state)} B (full Adam)")


if __name__ == "__main__":
    main()
