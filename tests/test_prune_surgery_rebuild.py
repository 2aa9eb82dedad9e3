"""Surgery's real module: the structure record rebuilds the user's own linen / NNX ResNet
at the new widths; it equals the masked model, survives a save / load in a fresh process
and trains with jaxcomp.train.fit."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxcomp.core.errors import ConfigError
from jaxcomp.data import synthetic
from jaxcomp.flax.modules import pure_params
from jaxcomp.prune.rebuild import Resized
from jaxcomp.prune.surgery import (
    load_shrunk,
    masked_params,
    rebuild,
    save_shrunk,
    shrink,
)
from jaxcomp.train import fit, init_state
from tests.resnet_twins import CLASSES, SHAPE, NResNet, make_twins

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def shrunk():
    """``{framework: (model, params, model_state, x, Shrunk)}`` for the ResNet twins."""
    nm, npar, nst, lm, lpar, lst, x = make_twins()
    return {fw: (m, p, s, x, shrink(m, p, s, x, sparsity=0.5))
            for fw, m, p, s in (("nnx", nm, npar, nst), ("linen", lm, lpar, lst))}


def _shapes(tree):
    return jax.tree.map(np.shape, pure_params(tree))


@pytest.mark.parametrize("use_jit", [False, True])
@pytest.mark.parametrize("fw", ["linen", "nnx"])
def test_rebuilt_module_equals_masked_model(shrunk, fw, use_jit):
    model, params, ms, x, small = shrunk[fw]
    assert small.widths["block1/conv1/kernel"] == 8 and small.widths["block0/conv2/kernel"] == 4
    rebuilt = rebuild(small.record, model)
    p0, s0 = rebuilt.init(jax.random.key(5), x[:1])  # fresh init has the new shapes
    assert _shapes(p0) == _shapes(small.params)
    if fw == "linen":
        assert isinstance(rebuilt.module, Resized)
        assert p0["block1"]["proj_conv"]["kernel"].shape == (1, 1, 4, 8)
        assert s0["batch_stats"]["stem_bn"]["mean"].shape == (4,)
    else:
        m = rebuilt.module(nnx.Rngs(0))
        assert isinstance(m, NResNet) and isinstance(m.block1.proj_conv, nnx.Conv)
        assert (m.block1.proj_conv.in_features, m.block1.proj_conv.out_features) == (4, 8)
        assert m.stem_bn.num_features == 4 and m.head.in_features == 8
    f = lambda mod, p, s, v: mod.apply(p, s, v)[0]
    f = jax.jit(f, static_argnums=0) if use_jit else f
    y = f(rebuilt, small.params, small.model_state, x)
    y_masked = f(model, masked_params(params, small.graph, small.keep), ms, x)
    np.testing.assert_allclose(y, y_masked, atol=1e-5, rtol=1e-5)
    assert float(jnp.max(jnp.abs(y))) > 0.1  # not trivially zero


def test_record_is_json_and_names_the_layers(shrunk):
    rec_l, rec_n = shrunk["linen"][4].record, shrunk["nnx"][4].record
    for rec in (rec_l, rec_n):
        assert json.loads(json.dumps(rec)) == rec
    by_path = {e["path"]: e for e in rec_l["layers"]}
    assert by_path["block1/proj_conv"] == {"path": "block1/proj_conv", "kind": "conv",
                                           "features": 8, "in_features": 4,
                                           "feature_group_count": 1}
    assert by_path["stem_bn"] == {"path": "stem_bn", "kind": "batchnorm", "num_features": 4}
    assert sorted(by_path) == sorted(e["path"] for e in rec_n["layers"])
    assert rec_l["overrides"] == {"block0": {"cout": 4}, "block1": {"cout": 8}}
    assert rec_n["module"]["class"] == "tests.resnet_twins.NResNet"
    assert rec_l["module"] == {"class": "tests.resnet_twins.LResNet", "fields": {}}


def test_bad_records(shrunk):
    rec = shrunk["linen"][4].record
    with pytest.raises(ConfigError, match="format"):
        rebuild({**rec, "format": "other"})
    with pytest.raises(ConfigError, match="no importable"):
        rebuild({**shrunk["nnx"][4].record, "module": {"class": None, "fields": None}})
    with pytest.raises(ConfigError, match="differ from the record"):
        rebuild({**rec, "overrides": {}, "layers": rec["layers"][:2]})


CHILD = """
import sys, numpy as np, jax
from jaxcomp.prune.surgery import load_shrunk
r = load_shrunk(sys.argv[1])
x = np.load(sys.argv[2])
np.save(sys.argv[3], np.asarray(jax.jit(lambda p, s, v: r.model.apply(p, s, v)[0])(
    r.params, r.model_state, x)))
"""


@pytest.mark.parametrize("fw", ["linen", "nnx"])
def test_save_load_in_a_fresh_process_and_fit(shrunk, fw, tmp_path):
    model, _, _, x, small = shrunk[fw]
    save_shrunk(str(tmp_path / "ck"), small)
    np.save(tmp_path / "x.npy", np.asarray(x))
    env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"}
    subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "ck"), str(tmp_path / "x.npy"),
                    str(tmp_path / "y.npy")], check=True, env=env, cwd=str(tmp_path),
                   timeout=120)
    y_child = np.load(tmp_path / "y.npy")
    y_parent = small.model.apply(small.params, small.model_state, x)[0]
    np.testing.assert_allclose(y_child, y_parent, atol=1e-5, rtol=1e-5)

    # here too: restore with the module given explicitly, then fine-tune two steps
    r = load_shrunk(str(tmp_path / "ck"), model)
    np.testing.assert_allclose(r.model.apply(r.params, r.model_state, x)[0], y_parent,
                               atol=1e-5, rtol=1e-5)
    ds = synthetic(num_train=32, num_test=16, shape=SHAPE, num_classes=CLASSES)
    tx = optax.sgd(0.05)
    state = init_state(r.model, ds, tx, seed=0, params=r.params, model_state=r.model_state)
    result = fit(r.model, ds, tx, epochs=2, batch_size=16, state=state, progress=False)
    losses = [h["train_loss"] for h in result.history]
    assert np.all(np.isfinite(losses)) and losses[0] != losses[1]
    before = jax.tree.leaves(pure_params(r.params))
    after = jax.tree.leaves(pure_params(result.state.params))
    assert any(not np.allclose(a, b) for a, b in zip(before, after, strict=True))
