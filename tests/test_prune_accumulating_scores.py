"""Taylor (EMA of |g·w|) and movement (Σ −w·g) scores against numpy, through the pruner's
accumulator and its mask at the gated step, in jit and eager."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcomp.prune.pruner import pruner


def _steps(seed=0, n=6, shape=(5, 4)):
    rng = np.random.default_rng(seed)
    ws = [rng.normal(size=shape).astype(np.float32) for _ in range(n)]
    gs = [rng.normal(size=shape).astype(np.float32) for _ in range(n)]
    return ws, gs


def _numpy_scores(name, ws, gs, decay):
    acc = np.zeros_like(ws[0])
    for w, g in zip(ws, gs, strict=True):
        acc = decay * acc + (1 - decay) * np.abs(g * w) if name == "taylor" else acc - w * g
    return acc


@pytest.mark.parametrize("use_jit", [True, False])
@pytest.mark.parametrize("name", ["taylor", "movement"])
def test_accumulated_scores_and_mask_match_numpy(name, use_jit):
    ws, gs = _steps()
    last = len(ws) - 1
    # masks only at the last step, after every gradient has been accumulated
    t = pruner(name, 0.5, gate=(last, last, 1), where=["w"], ema_decay=0.8, monotone=False)
    update = jax.jit(t.update) if use_jit else t.update
    state = t.init({"w": jnp.asarray(ws[0])})
    for i, (w, g) in enumerate(zip(ws, gs, strict=True)):
        state = update({"w": jnp.asarray(w)}, state, step=i, grads={"w": jnp.asarray(g)})
    ref = _numpy_scores(name, ws, gs, 0.8)
    np.testing.assert_allclose(np.asarray(state["acc"]["w"]), ref, rtol=1e-5, atol=1e-6)
    # the 10 lowest accumulated scores are pruned (ties impossible with random floats)
    keep = np.asarray(state["masks"]["w"]).ravel()
    order = np.argsort(ref.ravel(), kind="stable")
    expect = np.ones(ref.size, bool)
    expect[order[:10]] = False
    np.testing.assert_array_equal(keep, expect)


def test_movement_prunes_weights_moving_towards_zero():
    # hand-computed: w > 0 with g > 0 moves towards zero (score −w·g < 0): pruned first
    w = jnp.array([[1.0, 1.0, -1.0, -1.0]])
    g = jnp.array([[2.0, -2.0, -3.0, 1.0]])  # scores: −2, +2, −3, +1
    t = pruner("movement", 0.5, gate=(0, 0, 1), where=["w"], monotone=False)
    s = t.update({"w": w}, t.init({"w": w}), step=0, grads={"w": g})
    assert np.asarray(s["acc"]["w"]).tolist() == [[-2.0, 2.0, -3.0, 1.0]]
    assert np.asarray(s["masks"]["w"]).tolist() == [[False, True, False, True]]
