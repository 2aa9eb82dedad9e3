"""Hadamard rotations: orthogonality, sizes, the rotated float network equals
the original (RMSNorm and LayerNorm), and W4A4 with rotation beats without."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcomp.core.errors import ConfigError
from jaxcomp.quant import calib
from jaxcomp.quant.calib import rotate as R
from tests.calib_tiny_model import block_apply, init_block, norm

D, FF = 32, 64


@pytest.mark.parametrize("n", [1, 2, 8, 12, 20, 24, 48, 64, 96, 768])
def test_hadamard_is_hadamard(n):
    h = R.hadamard(n)
    assert set(np.unique(h)) <= {-1.0, 1.0}
    np.testing.assert_array_equal(h @ h.T, n * np.eye(n))


def test_hadamard_bad_size_is_clear():
    with pytest.raises(ConfigError, match=r"n=28 is not supported.*power of 2"):
        R.hadamard(28)


def make_model(key, kind):
    k = jax.random.split(key, 6)
    emb_scale = jnp.ones(D).at[jnp.array([3, 17])].set(30.0)   # outlier residual channels
    return {"emb": {"kernel": jax.random.normal(k[0], (8, D)) * emb_scale / 3,
                    "bias": 0.1 * jax.random.normal(k[1], (D,))},
            "blocks": [init_block(k[2], D, FF), init_block(k[3], D, FF)],
            "lnf": {"scale": 1 + 0.2 * jax.random.normal(k[4], (D,)),
                    "bias": 0.1 * jax.random.normal(jax.random.fold_in(k[4], 1), (D,))},
            "head": {"kernel": jax.random.normal(k[5], (D, 11)) / 6, "bias": jnp.zeros(11)}}


def forward(m, x, kind, tap=calib.no_tap, online=None):
    h = x @ m["emb"]["kernel"] + m["emb"]["bias"]
    for p in m["blocks"]:
        h = block_apply(p, h, tap, kind=kind, online=online)
    return calib.run_blocks([], norm(h, m["lnf"], kind)) @ m["head"]["kernel"] + m["head"]["bias"]


def rotated(m, q, h_ff, kind):
    """The recipe of the rotate module's docstring, step by step."""
    one = {"scale": jnp.ones(D), "bias": jnp.zeros(D)}
    m = jax.tree.map(lambda a: a, m)
    if kind == "layer":                          # zero-mean stream: LayerNorm == RMSNorm
        m["emb"]["kernel"], m["emb"]["bias"] = R.center_writer(m["emb"]["kernel"],
                                                               m["emb"]["bias"])
    m["emb"]["kernel"], m["emb"]["bias"] = R.rotate_writer(m["emb"]["kernel"],
                                                           m["emb"]["bias"], q)
    blocks = []
    for p in m["blocks"]:
        a, mlp = dict(p["attn"]), dict(p["mlp"])
        for n in "qkv":
            k, b = R.fold_norm_into_linear(p["ln1"]["scale"], p["ln1"]["bias"],
                                           a[n]["kernel"], a[n]["bias"])
            a[n] = {"kernel": R.rotate_reader(k, q), "bias": b}
        k, b = R.fold_norm_into_linear(p["ln2"]["scale"], p["ln2"]["bias"],
                                       mlp["up"]["kernel"], mlp["up"]["bias"])
        mlp["up"] = {"kernel": R.rotate_reader(k, q), "bias": b}
        for blk, n in ((a, "o"), (mlp, "down")):
            k, b = blk[n]["kernel"], blk[n]["bias"]
            if kind == "layer":
                k, b = R.center_writer(k, b)
            if n == "down":
                k = R.rotate_reader(k, h_ff)     # online rotation of the down-proj input
            k, b = R.rotate_writer(k, b, q)
            blk[n] = {"kernel": k, "bias": b}
        blocks.append({"ln1": one, "ln2": one, "attn": a, "mlp": mlp})
    k, b = R.fold_norm_into_linear(m["lnf"]["scale"], m["lnf"]["bias"], m["head"]["kernel"],
                                   m["head"]["bias"])
    return {"emb": m["emb"], "blocks": blocks, "lnf": one,
            "head": {"kernel": R.rotate_reader(k, q), "bias": b}}


@pytest.mark.parametrize("kind", ["rms", "layer"])
@pytest.mark.parametrize("use_jit", [True, False])
def test_rotated_float_network_is_unchanged(kind, use_jit):
    m = make_model(jax.random.key(0), kind)
    x = jax.random.normal(jax.random.key(1), (2, 8, 8))
    q = R.random_hadamard(D, jax.random.key(2))
    hff = R.random_hadamard(FF, jax.random.key(3))
    mr = rotated(m, q, hff, kind)
    f = functools.partial(forward, kind=kind)
    # the rotated stream is not zero-mean: its norms must run without centering
    fr = functools.partial(forward, kind="rms", online=hff)
    if use_jit:
        f, fr = jax.jit(f), jax.jit(fr)
    y, yr = f(m, x), fr(mr, x)
    np.testing.assert_allclose(yr, y, rtol=1e-5, atol=2e-5 * float(jnp.abs(y).max()))


def w4a4_error(x, w, q=None):
    if q is not None:
        x, w = R.online_rotate(x, q), R.rotate_reader(w, q)
    yq = calib.per_token(x, 4) @ calib.rtn(w, bits=4, group_size=None, sym=True)[0]
    return float(jnp.linalg.norm(yq - (x @ w)))


def test_w4a4_linear_rotation_beats_none_on_outliers():
    x = jax.random.normal(jax.random.key(4), (256, 64)) * jnp.ones(64).at[
        jnp.array([5, 40])].set(40.0)
    w = jax.random.normal(jax.random.key(5), (64, 32))
    y = jnp.linalg.norm(x @ w)
    q = R.random_hadamard(64, jax.random.key(6))
    e0, e1 = w4a4_error(x, w) / y, w4a4_error(x, w, q) / y
    assert e1 < 0.85 * e0, (e0, e1)


def test_w4a4_network_rotation_beats_none():
    kind = "rms"
    m = make_model(jax.random.key(7), kind)
    x = jax.random.normal(jax.random.key(8), (4, 8, 8))
    q = R.random_hadamard(D, jax.random.key(9))
    hff = R.random_hadamard(FF, jax.random.key(10))
    mr = rotated(m, q, hff, kind)

    def w4(model):
        def f(path, a):
            if path.endswith("kernel") and a.ndim == 2 and not path.startswith("emb"):
                return calib.rtn(a, bits=4, group_size=None, sym=True)[0]
            return a
        from jaxcomp.core import paths
        return paths.map_with_path(f, model)

    tap = calib.act_quant_tap(4)
    y = forward(m, x, kind)
    e0 = jnp.linalg.norm(forward(w4(m), x, kind, tap) - y)
    e1 = jnp.linalg.norm(forward(w4(mr), x, "rms", tap, online=hff) - y)
    assert float(e1) < 0.8 * float(e0), (float(e0), float(e1))
