"""End to end on the ResNet twins: the same params in the linen and the NNX model give the
same numbers out through gradual magnitude pruning + fit, channel surgery (a rebuilt real
module), factorization, feature capture with a KD loss step and prune sensitivity."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxcomp.distill as kd
import jaxcomp.prune as jp
from jaxcomp.core import schedules
from jaxcomp.data import synthetic
from jaxcomp.decompose.factorize import factorize, reconstruct_params
from jaxcomp.flax.modules import batch_stats, pure_params
from jaxcomp.prune.surgery import masked_params, rebuild, shrink
from jaxcomp.train import fit, init_state
from tests.resnet_twins import CLASSES, SHAPE, make_twins

# one worker runs this module (test.sh: --dist loadgroup): its module fixtures (every family
# on both twins, about 30-50 s) are built once, not on each worker
pytestmark = pytest.mark.xdist_group("nnx_e2e")

FAMILIES = ["linen", "nnx"]


@pytest.fixture(scope="module")
def twins():
    """``{family: (model, params, model_state)}``, the example batch and a dataset."""
    nm, npar, nst, lm, lpar, lst, x = make_twins(batch=16)
    ds = synthetic(num_train=32, num_test=32, shape=SHAPE, num_classes=CLASSES, seed=1)
    return {"nnx": (nm, npar, nst), "linen": (lm, lpar, lst)}, x, ds


@pytest.fixture(scope="module")
def results(twins):
    """Every family's results per model family, computed once (compared below)."""
    models, x, ds = twins
    return {fw: _run_all(*models[fw], x, ds) for fw in FAMILIES}


def _run_all(model, params, ms, x, ds):
    out = {}
    # gradual magnitude pruning inside fit (4 steps; sparsity 0 -> 0.5 over steps 0..3)
    t = jp.pruner("magnitude", schedules.polynomial(0.0, 0.5, 0, 3, frequency=1))
    tx = optax.sgd(0.05)
    st = init_state(model, ds, tx, seed=0, transform=t, params=params, model_state=ms)
    res = fit(model, ds, tx, epochs=2, batch_size=16, transform=t, state=st, progress=False,
              scan=False)
    pruned = pure_params(t.apply(res.state.params, res.state.comp_state))
    out["prune"] = (pruned, [h["train_loss"] for h in res.history],
                    batch_stats(res.state.model_state))
    # channel surgery and the rebuilt module
    small = shrink(model, params, ms, x, sparsity=0.5)
    rebuilt = rebuild(small.record, model)
    y_small = jax.jit(lambda p, s, v: rebuilt.apply(p, s, v)[0])(small.params,
                                                                  small.model_state, x)
    y_masked = model.apply(masked_params(params, small.graph, small.keep), ms, x)[0]
    out["surgery"] = (small.widths, {k: v.tolist() for k, v in small.keep.items()}, y_small,
                      y_masked, pure_params(small.params))
    # factorization
    spec = {"block0/conv1": {"method": "tucker2", "rank": (4, 4)},
            "block1/conv2": {"method": "tucker2", "rank": (6, 6)},
            "head": {"method": "svd", "rank": 2}}
    f = factorize(model, params, spec)
    y_fact = jax.jit(lambda p, s, v: f.model.apply(p, s, v)[0])(f.params, ms, x)
    y_recon = model.apply(_like(params, reconstruct_params(f.params, spec)), ms, x)[0]
    out["factorize"] = (pure_params(f.params), y_fact, y_recon)
    # feature capture + one KD step (the teacher: the model itself with other params)
    fm = kd.capture(model, ["block0", "block1/conv2"])
    logits_t, feats_t, _ = fm.apply(params, ms, x)
    y = jnp.arange(x.shape[0]) % CLASSES

    def loss(p):
        logits, feats, _ = fm.apply(p, ms, x)
        hint = jnp.mean((feats["block1/conv2"] - jax.lax.stop_gradient(
            0.5 * feats_t["block1/conv2"])) ** 2)
        return kd.kd_loss(logits, logits_t + 1.0 * (y == 0)[:, None], y, 2.0, 0.5) + hint

    lv, grads = jax.jit(jax.value_and_grad(loss))(params)
    out["distill"] = ({k: v for k, v in feats_t.items()}, float(lv), pure_params(grads))
    # prune sensitivity: unstructured per layer and channels per group
    sens = jp.sensitivity.sensitivity
    rows = sens(model, params, ms, ds, [0.25, 0.5], ["block1/conv2/kernel", "head/kernel"])
    rows += sens(model, params, ms, ds, [0.5], ["block0/conv1/kernel"], kind="channels")
    out["sensitivity"] = rows
    return out


def _like(params, tree):
    """``tree`` (a nested dict) in the type of ``params`` (an NNX State is updated)."""
    if isinstance(params, dict):
        return tree
    from flax import nnx

    new = jax.tree.map(lambda a: a, params)
    nnx.replace_by_pure_dict(new, tree)
    return new


def _close(a, b, atol=1e-5):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), atol=atol, rtol=1e-5)


@pytest.mark.parametrize("fw", FAMILIES)
def test_each_family_is_right_on_its_own(results, fw):
    r = results[fw]
    pruned, losses, _ = r["prune"]
    kernels = [v for k, v in _flat(pruned).items() if k.endswith("kernel")]
    sparsity = sum(int(np.sum(np.asarray(k) == 0)) for k in kernels) / sum(k.size
                                                                           for k in kernels)
    assert 0.45 < sparsity < 0.55 and np.all(np.isfinite(losses)) and losses[0] != losses[1]
    widths, _, y_small, y_masked, _ = r["surgery"]
    assert widths["block0/conv2/kernel"] == 4
    np.testing.assert_allclose(y_small, y_masked, atol=1e-5, rtol=1e-5)
    _, y_fact, y_recon = r["factorize"]
    np.testing.assert_allclose(y_fact, y_recon, atol=1e-4, rtol=1e-4)
    feats, lv, grads = r["distill"]
    assert feats["block0"].shape == (16, 8, 8, 8) and np.isfinite(lv)
    assert float(jnp.abs(grads["head"]["kernel"]).sum()) > 0
    rows = r["sensitivity"]
    assert {row["kind"] for row in rows} == {"prune", "channels"}
    assert all(0.0 <= row["accuracy"] <= 1.0 for row in rows)


def _flat(tree, prefix=""):
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


@pytest.mark.parametrize("family", ["prune", "surgery", "factorize", "distill", "sensitivity"])
def test_linen_and_nnx_agree(results, family):
    a, b = results["linen"][family], results["nnx"][family]
    if family == "sensitivity":
        assert [(r["layer"], r["level"], r["kind"]) for r in a] == \
            [(r["layer"], r["level"], r["kind"]) for r in b]
        for ra, rb in zip(a, b, strict=True):
            assert ra["accuracy"] == pytest.approx(rb["accuracy"], abs=1e-6)
            assert ra["nll"] == pytest.approx(rb["nll"], rel=1e-4, abs=1e-5)
        return
    if family == "surgery":
        assert a[:2] == b[:2]  # the same widths and kept channels
        _close(a[2:], b[2:])
        return
    if family == "distill":
        assert a[1] == pytest.approx(b[1], rel=1e-5)
        _close((a[0], a[2]), (b[0], b[2]), atol=1e-5)
        return
    if family == "prune":
        np.testing.assert_allclose(a[1], b[1], rtol=1e-5)
    _close(a, b, atol=2e-5)
