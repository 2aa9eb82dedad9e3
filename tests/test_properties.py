"""Property tests (hypothesis) of the core numerics over random shapes, dtypes and values.

Profile ``reliability``: derandomized (the same examples in CI every time), no deadline
(jit compiles on first use), and a bounded number of examples per property — the counts
are in ``EXAMPLES`` and reported in docs/reliability.md. Shapes come from a small set so
the jitted functions compile a handful of times, not once per example.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxcomp.decompose.svd import svd_reconstruct, truncated_svd
from jaxcomp.prune import global_masks, magnitude, masked_optimizer, topk_mask
from jaxcomp.prune.optax_wrapper import get_masks
from jaxcomp.quant.uniform import (
    dequantize,
    fake_quant,
    qrange,
    quantize,
    quantize_with,
    ste_fake_quant,
)

settings.register_profile(
    "reliability", derandomize=True, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PROFILE = settings.get_profile("reliability")

#: examples run per property (reported in docs/reliability.md)
EXAMPLES = {
    "quant_error_half_scale": 30,
    "quant_idempotent": 25,
    "ste_gradient": 25,
    "mask_exact_zeros": 30,
    "global_mask_exact_zeros": 20,
    "quantized_mask_keeps_zeros": 25,
    "svd_error_monotone_in_rank": 15,
    "masked_optimizer_keeps_zeros": 6,
    "degenerate_tensors_finite": 15,
}
#: the eager (non-jit) variant of a property runs this many of its examples
EAGER_EXAMPLES = 6


def prop(name, use_jit=True):
    return settings(PROFILE, max_examples=EXAMPLES[name] if use_jit else EAGER_EXAMPLES)


SHAPES = [(7,), (4, 5), (2, 3, 4), (16, 6)]
BITS = [2, 3, 4, 8]
DTYPES = [np.float32, np.float16, jnp.bfloat16]


@st.composite
def tensors(draw, shapes=SHAPES, dtypes=DTYPES, lo=-1e3, hi=1e3):
    shape = draw(st.sampled_from(shapes))
    dtype = draw(st.sampled_from(dtypes))
    seed = draw(st.integers(0, 2**31 - 1))
    scale = draw(st.sampled_from([1e-3, 1.0, 30.0, hi]))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["normal", "uniform", "ints", "sparse"]))
    if kind == "normal":
        x = rng.normal(size=shape) * scale
    elif kind == "uniform":
        x = rng.uniform(-scale, scale, size=shape)
    elif kind == "ints":  # many ties and exact zeros
        x = rng.integers(-3, 4, size=shape).astype(np.float64)
    else:
        x = rng.normal(size=shape) * (rng.uniform(size=shape) < 0.3)
    x = np.clip(x, lo, hi)
    return np.asarray(jnp.asarray(x, dtype).astype(jnp.float32)), dtype


def _axis_for(draw, ndim):
    return draw(st.sampled_from([None] + list(range(ndim))))


@functools.cache
def _jit(f, static):
    """One jitted wrapper per function; its keyword arguments are static."""
    return jax.jit(f, static_argnames=static)


def _call(use_jit, f, *args, **kw):
    return (_jit(f, tuple(sorted(kw))) if use_jit else f)(*args, **kw)


def _roundtrip(x, *, bits, axis, symmetric):
    q, s, z = quantize(x, bits, axis=axis, symmetric=symmetric)
    return dequantize(q, s, z), s


# ------------------------------------------------------------------ quantization


@pytest.mark.parametrize("use_jit", [False, True], ids=["eager", "jit"])
def test_round_to_nearest_error_at_most_half_scale(use_jit):
    @prop("quant_error_half_scale", use_jit)
    @given(data=st.data())
    def check(data):
        _check_half_scale(use_jit, data)

    check()


def _check_half_scale(use_jit, data):
    x, _ = data.draw(tensors())
    bits = data.draw(st.sampled_from(BITS))
    axis = _axis_for(data.draw, x.ndim)
    symmetric = data.draw(st.booleans())
    xr, scale = _call(use_jit, _roundtrip, jnp.asarray(x), bits=bits, axis=axis,
                      symmetric=symmetric)
    err = np.abs(np.asarray(xr, np.float64) - x)
    bound = np.broadcast_to(np.asarray(scale, np.float64) / 2, x.shape)
    # float32 arithmetic of x/s and q*s: a few ulps of |x| on top of the half step
    tol = bound * (1 + 1e-5) + 4 * np.finfo(np.float32).eps * np.abs(x)
    assert np.all(err <= tol), float(np.max(err - bound))


@prop("quant_idempotent")
@given(data=st.data())
def test_quantization_is_idempotent(data):
    x, _ = data.draw(tensors())
    bits = data.draw(st.sampled_from(BITS))
    axis = _axis_for(data.draw, x.ndim)
    symmetric = data.draw(st.booleans())
    q, s, z = _call(True, quantize, jnp.asarray(x), bits=bits, axis=axis, symmetric=symmetric)
    xq = dequantize(q, s, z)
    # the same qparams map the dequantized values back to the very same codes
    q2 = _call(True, quantize_with, xq, s, z, bits=bits, symmetric=symmetric)
    np.testing.assert_array_equal(np.asarray(q2), np.asarray(q, np.float32))
    if not symmetric:
        # asymmetric min/max ranges are not re-derivable: the integer zero point shifts the
        # representable range, so recomputing qparams from fake_quant(x) may change them
        return
    # symmetric: fake-quant twice (qparams recomputed from the fake-quantized tensor)
    # changes nothing beyond float rounding of the recomputed scale
    fq = _call(True, fake_quant, jnp.asarray(x), bits=bits, axis=axis, symmetric=symmetric)
    fq2 = _call(True, fake_quant, fq, bits=bits, axis=axis, symmetric=symmetric)
    np.testing.assert_allclose(np.asarray(fq2), np.asarray(fq),
                               atol=float(np.max(np.asarray(s))) * 1e-4 + 1e-30, rtol=1e-5)


@pytest.mark.parametrize("use_jit", [False, True], ids=["eager", "jit"])
def test_ste_gradient_identity_inside_zero_outside(use_jit):
    @prop("ste_gradient", use_jit)
    @given(data=st.data())
    def check(data):
        _check_ste(use_jit, data)

    check()


def _ste_grad(x, s, z, *, bits, symmetric):
    return jax.grad(lambda v: ste_fake_quant(v, s, z, bits, symmetric=symmetric).sum())(x)


def _check_ste(use_jit, data):
    x, _ = data.draw(tensors(dtypes=[np.float32]))
    bits = data.draw(st.sampled_from(BITS))
    symmetric = data.draw(st.booleans())
    # a range narrower than the data: values beyond it are clipped
    frac = data.draw(st.sampled_from([0.25, 0.5, 1.0]))
    lo, hi = float(x.min()) * frac, float(x.max()) * frac
    from jaxcomp.quant.uniform import qparams

    s, z = qparams(jnp.float32(lo), jnp.float32(hi), bits, symmetric=symmetric)

    g = _call(use_jit, _ste_grad, jnp.asarray(x), s, z, bits=bits, symmetric=symmetric)
    qmin, qmax = (float(v) for v in qrange(bits, symmetric=symmetric))
    sf, zf = np.float32(s), np.float32(z)
    rlo, rhi = (np.float32(qmin) - zf) * sf, (np.float32(qmax) - zf) * sf
    inside = (x >= rlo) & (x <= rhi)
    np.testing.assert_array_equal(np.asarray(g), inside.astype(np.float32))
    if frac < 1.0 and np.ptp(x) > 0:
        assert not inside.all() or np.all(x == 0)


# ------------------------------------------------------------------ masks


def _expected_zeros(sparsity, n):
    return int(np.clip(np.round(np.float32(sparsity) * np.float32(n)), 0, n))


@pytest.mark.parametrize("use_jit", [False, True], ids=["eager", "jit"])
def test_mask_has_exactly_the_requested_zeros(use_jit):
    @prop("mask_exact_zeros", use_jit)
    @given(data=st.data())
    def check(data):
        _check_mask(use_jit, data)

    check()


def _check_mask(use_jit, data):
    x, _ = data.draw(tensors())
    sparsity = data.draw(st.one_of(st.sampled_from([0.0, 0.5, 0.9, 0.999]),
                                   st.floats(0.0, 0.999, allow_nan=False)))
    # sparsity is a traced argument under jit: one compile per shape serves every value
    m = np.asarray(_call(use_jit, topk_mask, jnp.abs(jnp.asarray(x)), jnp.float32(sparsity)))
    assert m.dtype == bool and m.shape == x.shape
    assert int((~m).sum()) == _expected_zeros(sparsity, x.size)
    # every kept score is >= every pruned score
    a = np.abs(x)
    if m.any() and (~m).any():
        assert a[m].min() >= a[~m].max()


@prop("global_mask_exact_zeros")
@given(data=st.data())
def test_global_mask_has_exactly_the_requested_zeros(data):
    k = data.draw(st.integers(1, 3))
    leaves = {f"l{i}": np.abs(data.draw(tensors())[0]) for i in range(k)}
    sparsity = data.draw(st.floats(0.0, 0.999, allow_nan=False))
    normalize = data.draw(st.sampled_from([None, "l1", "max"]))
    masks = global_masks({p: jnp.asarray(v) for p, v in leaves.items()}, sparsity,
                         normalize=normalize)
    n = sum(v.size for v in leaves.values())
    assert sum(int((~np.asarray(m)).sum()) for m in masks.values()) == \
        _expected_zeros(sparsity, n)


@prop("quantized_mask_keeps_zeros")
@given(data=st.data())
def test_quantizing_a_masked_tensor_keeps_its_zeros(data):
    x, _ = data.draw(tensors())
    sparsity = data.draw(st.floats(0.0, 0.95, allow_nan=False))
    bits = data.draw(st.sampled_from(BITS))
    axis = _axis_for(data.draw, x.ndim)
    symmetric = data.draw(st.booleans())
    m = _call(True, topk_mask, jnp.abs(jnp.asarray(x)), jnp.float32(sparsity))
    xm = jnp.where(m, jnp.asarray(x), 0.0)
    xr, _ = _call(True, _roundtrip, xm, bits=bits, axis=axis, symmetric=symmetric)
    assert np.all(np.asarray(xr)[~np.asarray(m)] == 0.0)
    fq = np.asarray(_call(True, fake_quant, xm, bits=bits, axis=axis, symmetric=symmetric))
    assert np.all(fq[~np.asarray(m)] == 0.0)


# ------------------------------------------------------------------ decomposition


@prop("svd_error_monotone_in_rank")
@given(data=st.data())
def test_svd_error_does_not_increase_with_rank(data):
    shape = data.draw(st.sampled_from([(4, 5), (8, 3), (6, 6), (12, 7)]))
    x, _ = data.draw(tensors(shapes=[shape], dtypes=[np.float32]))
    norm = float(np.linalg.norm(x))
    errs = []
    for r in range(1, min(shape) + 1):
        w = np.asarray(svd_reconstruct(truncated_svd(jnp.asarray(x), r)), np.float64)
        errs.append(float(np.linalg.norm(w - x)))
    tol = 1e-5 * norm + 1e-30
    assert all(b <= a + tol for a, b in zip(errs, errs[1:], strict=False)), errs
    # the error at rank r is the tail of the singular values (Eckart-Young), numpy reference
    sv = np.linalg.svd(x.astype(np.float64), compute_uv=False)
    ref = [float(np.sqrt(np.sum(sv[r:] ** 2))) for r in range(1, min(shape) + 1)]
    np.testing.assert_allclose(errs, ref, atol=1e-4 * norm + 1e-30, rtol=1e-3)


# ------------------------------------------------------------------ optax wrapper

_OPT_SHAPES = {"Dense_0": {"kernel": (6, 5), "bias": (5,)}, "Dense_1": {"kernel": (5, 3)}}


@prop("masked_optimizer_keeps_zeros")
@given(seed=st.integers(0, 2**31 - 1), sparsity=st.floats(0.05, 0.95),
       opt=st.sampled_from(["adam", "sgd_momentum"]))
def test_masked_optimizer_never_revives_a_pruned_weight(seed, sparsity, opt):
    rng = np.random.default_rng(seed)
    params = jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s), jnp.float32), _OPT_SHAPES,
                          is_leaf=lambda s: isinstance(s, tuple))
    inner = optax.adam(0.1) if opt == "adam" else optax.sgd(0.1, momentum=0.9)
    tx = masked_optimizer(inner, magnitude(jnp.float32(sparsity)))
    state = tx.init(params)
    step = _opt_step(tx)
    for i in range(4):
        grads = jax.tree.map(lambda p, i=i: jnp.asarray(
            rng.normal(size=p.shape) * 10 ** (i - 1), jnp.float32), params)
        params, state = step(params, state, grads)
        masks = get_masks(state)
        flat = {"/".join(str(k.key) for k in kp): v
                for kp, v in jax.tree_util.tree_flatten_with_path(params)[0]}
        assert masks, "the pruner selected no leaf"
        for path, m in masks.items():
            w = np.asarray(flat[path])
            assert np.all(w[~np.asarray(m)] == 0.0), (path, i)




def _opt_step(tx):
    @jax.jit
    def step(params, state, grads):
        u, state = tx.update(grads, state, params)
        return optax.apply_updates(params, u), state

    return step


# ------------------------------------------------------------------ degenerate tensors


def _fq_grad(x, *, bits, symmetric):
    return jax.grad(lambda v: fake_quant(v, bits, symmetric=symmetric).sum())(x)


@prop("degenerate_tensors_finite")
@given(shape=st.sampled_from(SHAPES), value=st.sampled_from([0.0, 1.0, -3.5, 1e-30, 7e3]),
       bits=st.sampled_from(BITS), symmetric=st.booleans())
def test_zero_and_constant_tensors_give_no_nan(shape, value, bits, symmetric):
    x = jnp.full(shape, value, jnp.float32)
    for axis in (None, 0):
        q, s, z = _call(True, quantize, x, bits=bits, axis=axis, symmetric=symmetric)
        for a in (q, s, z, dequantize(q, s, z),
                  _call(True, fake_quant, x, bits=bits, axis=axis, symmetric=symmetric)):
            assert np.all(np.isfinite(np.asarray(a, np.float32)))
    g = _call(True, _fq_grad, x, bits=bits, symmetric=symmetric)
    assert np.all(np.isfinite(np.asarray(g)))
    m = _call(True, topk_mask, jnp.abs(x), jnp.float32(0.5))
    assert int((~m).sum()) == _expected_zeros(0.5, x.size)
    gm = global_masks({"a": jnp.abs(x), "b": jnp.zeros((3,))}, 0.5, normalize="l2")
    assert sum(int((~v).sum()) for v in gm.values()) == _expected_zeros(0.5, x.size + 3)
    if len(shape) == 2:
        f = truncated_svd(x, 1)
        assert all(np.all(np.isfinite(np.asarray(a))) for a in f)
        assert np.all(np.isfinite(np.asarray(svd_reconstruct(f))))
