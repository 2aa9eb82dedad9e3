"""Sensitivity analysis: vmapped levels equal one-at-a-time references; CSV and PNG output."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcomp.core.errors import ConfigError
from jaxcomp.data import synthetic
from jaxcomp.models import get_model

sens = importlib.import_module("jaxcomp.prune.sensitivity")  # the module, even if re-exported

LEVELS = [0.0, 0.3, 0.7, 0.95]


@pytest.fixture(scope="module")
def setup():
    ds = synthetic(num_train=32, num_test=150, shape=(6,), num_classes=3)
    model = get_model("mlp", input_shape=(6,), num_classes=3, features=(12, 8))
    params, state = jax.jit(model.init)(jax.random.key(0), jnp.ones((1, 6)))
    return ds, model, params, state


def _acc(model, params, state, ds):
    logits, _ = jax.jit(lambda p: model.apply(p, state, jnp.asarray(ds.x_test)))(params)
    return float(np.mean(np.argmax(np.asarray(logits), -1) == ds.y_test))


def _with(params, layer, leaf):
    out = jax.tree.map(lambda a: a, params)
    out = {k: dict(v) for k, v in out.items()}
    out[layer]["kernel"] = jnp.asarray(leaf)
    return out


def test_prune_levels_match_numpy_magnitude_pruning(setup):
    ds, model, params, state = setup
    rows = sens.sensitivity(model, params, state, ds, LEVELS, batch_size=64)
    assert [(r["layer"], r["level"]) for r in rows] == [
        (f"Dense_{i}/kernel", lv) for i in range(3) for lv in LEVELS]
    base = _acc(model, params, state, ds)
    for r in rows:
        layer = r["layer"].split("/")[0]
        w = np.asarray(params[layer]["kernel"])
        k = int(round(r["level"] * w.size))
        order = np.argsort(np.abs(w).ravel(), kind="stable")
        pruned = w.ravel().copy()
        pruned[order[:k]] = 0
        ref = _acc(model, _with(params, layer, pruned.reshape(w.shape)), state, ds)
        assert r["accuracy"] == pytest.approx(ref, abs=1e-9), r
        assert r["baseline_accuracy"] == pytest.approx(base, abs=1e-9)
        if r["level"] == 0.0:
            assert r["accuracy"] == pytest.approx(base, abs=1e-9)


def test_quant_levels_match_numpy_quantization(setup):
    ds, model, params, state = setup
    rows = sens.sensitivity(model, params, state, ds, [8, 3, 1], where=["Dense_1/kernel"],
                            kind="quant")
    assert [r["level"] for r in rows] == [8, 3, 1]
    w = np.asarray(params["Dense_1"]["kernel"], np.float64)
    for r in rows:
        qmax = 2 ** (r["level"] - 1) - 1
        amax = np.abs(w).max(0, keepdims=True)
        scale = amax / max(qmax, 1)
        q = np.clip(np.round(w / scale), -qmax, qmax) * scale
        ref = _acc(model, _with(params, "Dense_1", q.astype(np.float32)), state, ds)
        assert r["accuracy"] == pytest.approx(ref, abs=1e-9)


def test_channel_levels_remove_whole_neurons(setup):
    ds, model, params, state = setup
    rows = sens.sensitivity(model, params, state, ds, [0.5], kind="channels", norm="l2")
    assert [r["layer"] for r in rows] == ["Dense_0/kernel", "Dense_1/kernel"]
    w = np.asarray(params["Dense_0"]["kernel"])
    score = np.sqrt((w ** 2).sum(0))
    drop = np.argsort(score, kind="stable")[:6]
    p2 = {k: dict(v) for k, v in params.items()}
    p2["Dense_0"]["kernel"] = jnp.asarray(np.where(np.isin(np.arange(12), drop), 0, w))
    b = np.asarray(params["Dense_0"]["bias"])
    p2["Dense_0"]["bias"] = jnp.asarray(np.where(np.isin(np.arange(12), drop), 0, b))
    assert rows[0]["accuracy"] == pytest.approx(_acc(model, p2, state, ds), abs=1e-9)


def test_csv_roundtrip_and_png(setup, tmp_path):
    ds, model, params, state = setup
    rows = sens.sensitivity(model, params, state, ds, [0.0, 0.9], where="Dense_0/kernel")
    sens.write_csv(rows, str(tmp_path / "s.csv"))
    back = sens.read_csv(str(tmp_path / "s.csv"))
    assert [(r["layer"], r["level"], r["accuracy"]) for r in back] == [
        (r["layer"], r["level"], r["accuracy"]) for r in rows]
    sens.plot(rows, str(tmp_path / "s.png"))
    data = (tmp_path / "s.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


@pytest.mark.parametrize("kwargs,match", [
    ({"kind": "prnue"}, r"sensitivity.kind.*'prune'"),
    ({"levels": [0.5, 1.0]}, r"sparsity.*\[0, 1\)"),
    ({"levels": [0, 4], "kind": "quant"}, r"bits.*\[1, 32\]"),
    ({"levels": []}, "empty"),
    ({"where": ["Dense_9/kernel"]}, "matches no parameter path"),
])
def test_bad_input(setup, kwargs, match):
    ds, model, params, state = setup
    args = {"levels": [0.5], **kwargs}
    levels = args.pop("levels")
    with pytest.raises(ConfigError, match=match):
        sens.sensitivity(model, params, state, ds, levels, **args)
