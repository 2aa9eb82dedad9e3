"""A tiny pre-norm transformer (plain einsums) used by the calibration tests.

Blocks follow the calibration driver's contract: ``block_apply(p, x, tap)``
taps the input of every linear by its kernel path.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

LINEARS = ("attn/q/kernel", "attn/k/kernel", "attn/v/kernel", "attn/o/kernel",
           "mlp/up/kernel", "mlp/down/kernel")


def norm(x, p, kind, eps=1e-5):
    if kind == "layer":
        x = x - x.mean(-1, keepdims=True)
    x = x / jnp.sqrt((x * x).mean(-1, keepdims=True) + eps)
    return x * p["scale"] + p["bias"]


def dense(p, x, tap, name):
    return tap(name + "/kernel", x) @ p["kernel"] + p["bias"]


def block_apply(p, x, tap, *, heads=2, kind="layer", online=None):
    b, t, d = x.shape
    h = norm(x, p["ln1"], kind)
    a = p["attn"]
    q, k, v = (dense(a[n], h, tap, f"attn/{n}").reshape(b, t, heads, d // heads)
               for n in ("q", "k", "v"))
    att = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(d // heads)
    att = jnp.where(jnp.tril(jnp.ones((t, t), bool)), att, -1e9)
    o = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(att, -1), v).reshape(b, t, d)
    x = x + dense(a["o"], o, tap, "attn/o")
    u = jax.nn.gelu(dense(p["mlp"]["up"], norm(x, p["ln2"], kind), tap, "mlp/up"))
    if online is not None:
        u = u @ online
    return x + dense(p["mlp"]["down"], u, tap, "mlp/down")


def init_block(key, d, ff):
    ks = jax.random.split(key, 8)

    def lin(k, i, o):
        k1, k2 = jax.random.split(k)
        return {"kernel": jax.random.normal(k1, (i, o)) / jnp.sqrt(i),
                "bias": 0.02 * jax.random.normal(k2, (o,))}

    def ln(k):
        return {"scale": 1 + 0.2 * jax.random.normal(k, (d,)),
                "bias": 0.1 * jax.random.normal(jax.random.fold_in(k, 1), (d,))}

    return {"ln1": ln(ks[0]), "ln2": ln(ks[1]),
            "attn": {n: lin(ks[2 + i], d, d) for i, n in enumerate("qkvo")},
            "mlp": {"up": lin(ks[6], d, ff), "down": lin(ks[7], ff, d)}}


def make_blocks(key, n_blocks=2, d=32, ff=64, kind="layer"):
    from jaxcomp.quant.calib import Block
    fn = functools.partial(block_apply, kind=kind)
    return [Block(fn, init_block(k, d, ff), LINEARS) for k in jax.random.split(key, n_blocks)]
