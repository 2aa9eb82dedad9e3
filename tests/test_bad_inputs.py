"""A bad-input corpus: malformed inputs through the public API and the CLI.

Every case must fail with a :class:`jaxcomp.ConfigError` whose message names the offending
key, path or value (the ``needles``) — never a raw JAX/Python error, never a silent no-op.
CLI cases run ``jaxcomp.cli.main`` in-process (exit code 2, exactly one line on stderr,
nothing written to ``--out``); a few real subprocesses prove no traceback reaches stderr.

Cases the library does not handle yet are kept in the corpus as
``xfail(strict=True)`` with the reason (reported as bugs), so fixing them flips the test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcomp.core.errors import ConfigError
from tests.tiny_configs import tiny_config_source

X = jnp.array([[1.0, -2.0, 3.0], [0.5, 0.0, -1.0]])
PARAMS = {"Dense_0": {"kernel": jnp.ones((4, 3)), "bias": jnp.zeros(3)}}


def _cfg(**overrides):
    from jaxcomp.experiment import base_config
    from jaxcomp.experiment.config import apply_overrides

    c = base_config()
    apply_overrides(c, ["data.name=synthetic", "model.name=mlp", "train.epochs=1"])
    apply_overrides(c, [f"{k}={v}" for k, v in overrides.items()])
    return c


def _validate(**overrides):
    from jaxcomp.experiment.run import validate

    validate(_cfg(**overrides))


def _family_validate(family, **overrides):
    from jaxcomp.experiment import families

    c = _cfg(**overrides)
    families.available()[family].validate(c[family])


def _load(**overrides):
    from jaxcomp.experiment.run import load_data, validate

    cfg = _cfg(**overrides)
    validate(cfg)
    load_data(cfg)


def _run(**overrides):
    from jaxcomp.experiment import run_experiment

    run_experiment(_cfg(**overrides))


def _quant(*a, **k):
    from jaxcomp.quant.uniform import quantize

    return quantize(*a, **k)


def _fq(*a, **k):
    from jaxcomp.quant.uniform import fake_quant

    return fake_quant(*a, **k)


def _prune(name, *a, **k):
    from jaxcomp import prune

    return getattr(prune, name)(*a, **k)


def _svd(*a, **k):
    from jaxcomp.decompose.svd import truncated_svd

    return truncated_svd(*a, **k)


def _tucker(*a, **k):
    from jaxcomp.decompose.tucker import tucker2

    return tucker2(*a, **k)


def _cp(*a, **k):
    from jaxcomp.decompose.cp import cp_als

    return cp_als(*a, **k)


def _kd(*a, **k):
    from jaxcomp.distill.logits import kd_loss

    return kd_loss(*a, **k)


def _masked_update_without_params():
    tx = _prune("masked_optimizer", optax.sgd(0.1), _prune("magnitude", 0.5))
    state = tx.init(PARAMS)
    tx.update(PARAMS, state)


def _overrides(*items):
    from jaxcomp.experiment import base_config
    from jaxcomp.experiment.config import apply_overrides

    apply_overrides(base_config(), list(items))


def _load_config(tmp_path, text, name="cfg.py"):
    from jaxcomp.experiment.config import load_config

    p = tmp_path / name
    if text is not None:
        p.write_text(text)
    load_config(str(p))


def _fit_empty():
    from jaxcomp.data import load_dataset
    from jaxcomp.models import get_model
    from jaxcomp.train import fit

    ds = load_dataset("synthetic")
    import dataclasses

    ds = dataclasses.replace(ds, x_train=ds.x_train[:0], y_train=ds.y_train[:0])
    model = get_model("mlp", input_shape=ds.input_shape, num_classes=ds.num_classes)
    fit(model, ds, optax.sgd(0.1), epochs=1, batch_size=8, progress=False)


def _unreadable_checkpoint(tmp_path):
    from jaxcomp.train import create_state
    from jaxcomp.train.checkpoint import Checkpointer

    s = create_state({"w": jnp.ones(3)}, {}, optax.adam(1e-3), key=jax.random.key(0))
    ck = Checkpointer(str(tmp_path / "ck"))
    ck.save(s, epoch=1)
    ck.close()
    for root, _, files in os.walk(tmp_path / "ck" / "1"):
        for f in files:
            with open(os.path.join(root, f), "wb") as fh:
                fh.write(b"\x00garbage")
    Checkpointer(str(tmp_path / "ck")).restore_latest(s)


def _checkpoint_of_other_shape(tmp_path):
    from jaxcomp.train import create_state
    from jaxcomp.train.checkpoint import Checkpointer

    s = create_state({"w": jnp.ones(3)}, {}, optax.adam(1e-3), key=jax.random.key(0))
    ck = Checkpointer(str(tmp_path / "ck"))
    ck.save(s, epoch=1)
    ck.close()
    other = create_state({"w": jnp.ones(5)}, {}, optax.adam(1e-3), key=jax.random.key(0))
    Checkpointer(str(tmp_path / "ck")).restore_latest(other)


def _store_manifest(tmp_path, text):
    from jaxcomp.sweep.store import ResultStore

    (tmp_path / "manifest.json").write_text(text)
    ResultStore(tmp_path).claim("abc", {})


def _sweep_spec(kind):
    from jaxcomp.sweep import grid

    if kind == "empty":
        return grid.expand(_cfg(), grid.axis("seed", []))
    if kind == "overlap":
        return grid.product({"seed": [0, 1]}, {"seed": [2]})
    if kind == "zip_len":
        return grid.zip_({"seed": [0, 1]}, {"prune.sparsity": [0.5]})
    if kind == "unknown_key":
        return grid.expand(_cfg(), grid.product({"train.epoch": [1, 2]}))
    raise AssertionError(kind)


def _sweep_runner(tmp_path, spec_kw, **kw):
    from jaxcomp.sweep.grid import product
    from jaxcomp.sweep.runner import SweepRunner

    SweepRunner(_cfg(), product(spec_kw), str(tmp_path / "out"), progress=False, **kw)


def _select(where):
    from jaxcomp.core.select import select

    return select(PARAMS, where)


def _schedule(*a):
    from jaxcomp.core import schedules

    return schedules.polynomial(*a)


def _bug(reason):
    return pytest.mark.xfail(strict=True, raises=AssertionError, reason=reason)


NAN = jnp.array([[1.0, jnp.nan], [0.0, 2.0]])

# (id, callable(tmp_path), needles that must all appear in the message[, marks])
API_CASES = [
    # ---- quantization
    ("quant-bits-1", lambda t: _quant(X, 1), ["bits", "1"]),
    ("quant-bits-9", lambda t: _quant(X, 9), ["bits", "9"]),
    ("quant-bits-str", lambda t: _quant(X, "eight"), ["bits", "eight"]),
    ("quant-nan-weights", lambda t: _quant(NAN, 8), ["NaN"]),
    ("quant-inf-weights", lambda t: _fq(X.at[0, 0].set(jnp.inf), 8), ["infinite"]),
    ("quant-axis-out-of-range", lambda t: _quant(X, 8, axis=2), ["axis", "2"]),
    ("quant-axis-repeated", lambda t: _quant(X, 8, axis=(0, 0)), ["axis", "repeated"]),
    ("quant-group-size-not-divisor", lambda t: _quant(X, 8, group_size=2, group_axis=1),
     ["group_size", "2"]),
    ("quant-rounding-unknown", lambda t: _quant(X, 8, rounding="up"), ["rounding", "up"]),
    ("quant-stochastic-no-key", lambda t: _quant(X, 8, rounding="stochastic"), ["key"]),
    ("quant-weight-quant-bits", lambda t: __import__(
        "jaxcomp.quant.transform", fromlist=["x"]).weight_quant(bits=1).init(PARAMS),
     ["bits"]),
    # ---- pruning
    ("prune-topk-sparsity-1", lambda t: _prune("topk_mask", X, 1.0), ["sparsity", "1"]),
    ("prune-topk-sparsity-neg", lambda t: _prune("topk_mask", X, -0.1), ["sparsity", "-0.1"]),
    ("prune-topk-sparsity-nan", lambda t: _prune("topk_mask", X, float("nan")),
     ["sparsity", "nan"]),
    ("prune-global-no-leaves", lambda t: _prune("global_masks", {}, 0.5), ["no leaves"]),
    ("prune-global-normalize", lambda t: _prune("global_masks", {"a": X}, 0.5, normalize="l3"),
     ["normalize", "l3"]),
    ("prune-magnitude-sparsity", lambda t: _prune("magnitude", 1.5), ["sparsity", "1.5"]),
    ("prune-unknown-score", lambda t: _prune("pruner", "bogus"), ["prune.method", "bogus"]),
    ("prune-unknown-allocation", lambda t: _prune("pruner", allocation="everywhere"),
     ["prune.allocation", "everywhere"]),
    ("prune-unknown-structure", lambda t: _prune("pruner", structure="diagonal"),
     ["prune.structure", "diagonal"]),
    ("prune-where-matches-nothing",
     lambda t: _prune("magnitude", 0.5, where="NoSuch/.*").init(PARAMS), ["NoSuch"]),
    ("prune-nm-mismatched-shape",
     lambda t: _prune("pruner", structure="n:m", n=2, m=4).init(PARAMS), ["Dense_0/kernel"]),
    ("prune-check-masks-shape",
     lambda t: _prune("check_masks", {"Dense_0/kernel": PARAMS["Dense_0"]["kernel"]},
                      {"Dense_0/kernel": jnp.ones((3, 4), bool)}), ["Dense_0/kernel"]),
    ("prune-optax-update-without-params", lambda t: _masked_update_without_params(),
     ["params"]),
    ("select-bad-where-type", lambda t: _select(42), ["where"]),
    # ---- decomposition
    ("svd-rank-0", lambda t: _svd(jnp.ones((4, 5)), 0), ["rank", "0"]),
    ("svd-rank-too-big", lambda t: _svd(jnp.ones((4, 5)), 9), ["rank", "9"]),
    ("svd-3d-tensor", lambda t: _svd(jnp.ones((2, 3, 4)), 1), ["kernel"]),
    ("tucker-ranks-too-big", lambda t: _tucker(jnp.ones((3, 3, 4, 5)), (9, 9)), ["rank"]),
    ("cp-rank-0", lambda t: _cp(jnp.ones((3, 4, 5)), 0, key=jax.random.key(0)), ["rank"]),
    # ---- distillation
    ("kd-temperature-0", lambda t: _kd(jnp.ones((2, 3)), jnp.ones((2, 3)), jnp.zeros(2, int),
                                       0.0, 0.5), ["temperature"]),
    ("kd-alpha-out-of-range", lambda t: _kd(jnp.ones((2, 3)), jnp.ones((2, 3)),
                                            jnp.zeros(2, int), 2.0, 1.5), ["alpha", "1.5"]),
    ("kd-shape-mismatch", lambda t: _kd(jnp.ones((2, 3)), jnp.ones((2, 4)), jnp.zeros(2, int),
                                        2.0, 0.5), ["(2, 3)", "(2, 4)"]),
    # ---- schedules
    ("schedule-end-before-begin", lambda t: _schedule(0.0, 0.9, 100, 10), ["end", "begin"]),
    # ---- configs
    ("override-unknown-key", lambda t: _overrides("train.epoch=3"), ["train.epoch"]),
    ("override-wrong-type", lambda t: _overrides("train.epochs=many"),
     ["train.epochs", "many"]),
    ("override-no-equals", lambda t: _overrides("train.epochs"), ["train.epochs"]),
    ("override-unknown-section", lambda t: _overrides("nosuch.x=1"), ["nosuch"]),
    ("validate-optimizer", lambda t: _validate(**{"train.optimizer": "adagrad"}),
     ["train.optimizer", "adagrad"]),
    ("validate-lr-negative", lambda t: _validate(**{"train.learning_rate": -1.0}),
     ["train.learning_rate", "-1"]),
    ("validate-batch-size-0", lambda t: _validate(**{"train.batch_size": 0}),
     ["train.batch_size", "0"]),
    ("validate-epochs-negative", lambda t: _validate(**{"train.epochs": -2}),
     ["train.epochs", "-2"]),
    ("validate-unknown-dataset", lambda t: _validate(**{"data.name": "imagenet"}),
     ["data.name", "imagenet"]),
    ("validate-unknown-model", lambda t: _validate(**{"model.name": "resnet9000"}),
     ["model.name", "resnet9000"]),
    ("validate-scan", lambda t: _validate(**{"train.scan": "maybe"}), ["train.scan", "maybe"]),
    ("family-prune-method", lambda t: _family_validate("prune", **{"prune.method": "bogus"}),
     ["prune.method", "bogus"]),
    ("family-prune-sparsity", lambda t: _family_validate(
        "prune", **{"prune.method": "magnitude", "prune.sparsity": 1.2}),
     ["prune.sparsity", "1.2"]),
    ("family-decompose-energy", lambda t: _family_validate(
        "decompose", **{"decompose.method": "svd", "decompose.energy": 1.5}),
     ["decompose.energy", "1.5"]),
    ("run-quant-bits", lambda t: _run(**{"quant.method": "ptq", "quant.bits": 1}),
     ["quant.bits", "1"]),
    ("run-distill-temperature", lambda t: _run(**{"distill.method": "kd",
                                                  "distill.temperature": -1.0,
                                                  "distill.teacher_epochs": 1}),
     ["distill.temperature", "-1"]),
    ("run-data-limit-negative", lambda t: _load(**{"data.limit_train": -5}),
     ["data.limit_train", "-5"]),
    ("fit-empty-data", lambda t: _fit_empty(), ["synthetic", "train split is empty"]),
    ("config-missing-file", lambda t: _load_config(t, None, "nope.py"), ["nope.py"]),
    ("config-syntax-error", lambda t: _load_config(t, "def get_config(:\n"),
     ["cfg.py", "SyntaxError"]),
    ("config-no-get-config", lambda t: _load_config(t, "x = 1\n"), ["cfg.py", "get_config"]),
    ("config-get-config-raises", lambda t: _load_config(
        t, "def get_config():\n    return {}['missing']\n"), ["cfg.py", "missing"]),
    # ---- stores and checkpoints
    ("checkpoint-unreadable", _unreadable_checkpoint, ["ck", "unreadable or incomplete"]),
    ("checkpoint-other-shape", _checkpoint_of_other_shape, ["ck"]),
    ("store-manifest-not-json", lambda t: _store_manifest(t, "{not json"),
     ["manifest.json", "not valid JSON"]),
    ("store-other-sweep", lambda t: _store_manifest(t, json.dumps({"sweep_hash": "zzz"})),
     ["another sweep"]),
    # ---- sweep grids and runner
    ("grid-empty-axis", lambda t: _sweep_spec("empty"), ["seed"]),
    ("grid-overlapping-keys", lambda t: _sweep_spec("overlap"), ["seed"]),
    ("grid-zip-lengths", lambda t: _sweep_spec("zip_len"), ["prune.sparsity"]),
    ("grid-unknown-key", lambda t: _sweep_spec("unknown_key"), ["train.epoch"]),
    ("runner-chunk-size", lambda t: _sweep_runner(t, {"seed": [0]}, chunk_size=0),
     ["chunk_size", "0"]),
    ("runner-bad-setting", lambda t: _sweep_runner(t, {"train.batch_size": [8, -1]}),
     ["train.batch_size", "-1"]),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c[0], marks=c[3] if len(c) > 3 else ())
                                  for c in API_CASES])
def test_api_bad_input_gives_clear_config_error(case, tmp_path):
    _, fn, needles = case[:3]
    try:
        fn(tmp_path)
    except ConfigError as e:
        msg = str(e)
        assert "\n" not in msg.strip() or len(msg) < 2000
        missing = [n for n in needles if n not in msg]
        assert not missing, f"message {msg!r} does not name {missing}"
    except Exception as e:  # noqa: BLE001 - the point: any other error type is a bug
        raise AssertionError(f"unclear error {type(e).__name__}: {str(e)[:300]}") from None
    else:
        raise AssertionError("no error raised (silent no-op)")
    # nothing partial: a failed sweep runner leaves no records
    out = tmp_path / "out" / "results.jsonl"
    assert not out.exists() or out.stat().st_size == 0


# ------------------------------------------------------------------ CLI, in-process

TINY = tiny_config_source(features=8, epochs=1)

TINY_SWEEP = TINY + '''

def get_sweep():
    from jaxcomp.sweep.grid import product
    return product({"seed": [0, 1]})
'''


@pytest.fixture(scope="module")
def configs(tmp_path_factory):
    d = tmp_path_factory.mktemp("cfg")
    (d / "tiny.py").write_text(TINY)
    (d / "tiny_sweep.py").write_text(TINY_SWEEP)
    (d / "bad_sweep.py").write_text(TINY + "\n\ndef get_sweep():\n    return 42\n")
    (d / "syntax.py").write_text("def get_config(:\n")
    return d


# (id, argv template ({cfg} = config dir, {out} = output dir), needles[, marks])
CLI_CASES = [
    ("train-missing-config", ["train", "{cfg}/nope.py", "--out", "{out}"], ["nope.py"]),
    ("train-syntax-error", ["train", "{cfg}/syntax.py", "--out", "{out}"], ["syntax.py"]),
    ("train-unknown-key", ["train", "{cfg}/tiny.py", "--set", "train.epoch=2", "--out", "{out}"],
     ["train.epoch"]),
    ("train-wrong-type", ["train", "{cfg}/tiny.py", "--set", "train.epochs=two", "--out",
                          "{out}"], ["train.epochs", "two"]),
    ("train-negative-lr", ["train", "{cfg}/tiny.py", "--set", "train.learning_rate=-0.1",
                           "--out", "{out}"], ["train.learning_rate"]),
    ("train-unknown-dataset", ["train", "{cfg}/tiny.py", "--set", "data.name=cifar99",
                               "--out", "{out}"], ["data.name", "cifar99"]),
    ("train-prune-sparsity", ["train", "{cfg}/tiny.py", "--set", "prune.method=magnitude",
                              "--set", "prune.sparsity=1.5", "--out", "{out}"],
     ["prune.sparsity", "1.5"]),
    ("train-quant-bits", ["train", "{cfg}/tiny.py", "--set", "quant.method=ptq", "--set",
                          "quant.bits=33", "--out", "{out}"], ["quant.bits", "33"]),
    ("train-batch-too-big", ["train", "{cfg}/tiny.py", "--set", "train.batch_size=100000",
                             "--out", "{out}"], ["train.batch_size", "100000"]),
    ("sweep-bad-spec", ["sweep", "{cfg}/bad_sweep.py", "--out", "{out}"], ["get_sweep"]),
    ("sweep-bad-grid-value", ["sweep", "{cfg}/tiny_sweep.py", "--set",
                              "train.optimizer=adagrad", "--out", "{out}"],
     ["train.optimizer", "adagrad"]),
    ("sweep-missing-config", ["sweep", "{cfg}/nope_sweep.py", "--out", "{out}"],
     ["nope_sweep.py"]),
    ("report-missing-dir", ["report", "{out}/nothing-here"], ["nothing-here"]),
    ("reproduce-unknown-table", ["reproduce", "T99"], ["T99"]),
]


def _fill(argv, cfg, out):
    return [a.format(cfg=cfg, out=out) for a in argv]


@pytest.mark.parametrize("case", [pytest.param(c, id=c[0], marks=c[3] if len(c) > 3 else ())
                                  for c in CLI_CASES])
def test_cli_bad_input_exit_2_one_line_nothing_written(case, configs, tmp_path, capsys):
    from jaxcomp.cli import main

    _, argv, needles = case[:3]
    out = tmp_path / "out"
    code = main(_fill(argv, configs, out))
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, (code, err[-500:])
    assert len(lines) == 1, err[-1000:]
    missing = [n for n in needles if n not in lines[0]]
    assert not missing, f"{lines[0]!r} does not name {missing}"
    assert "Traceback" not in err
    # nothing partial in --out
    assert not (out / "result.json").exists()
    res = out / "results.jsonl"
    assert not res.exists() or res.stat().st_size == 0


# ------------------------------------------------------------------ CLI, real subprocesses


@pytest.mark.parametrize("argv,needle", [
    (["train", "{cfg}/tiny.py", "--set", "train.epochs=-1", "--out", "{out}"], "train.epochs"),
    (["sweep", "{cfg}/tiny_sweep.py", "--set", "model.name=nosuch", "--out", "{out}"],
     "model.name"),
], ids=["train", "sweep"])
def test_cli_subprocess_no_traceback(argv, needle, configs, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    p = subprocess.run([sys.executable, "-m", "jaxcomp.cli", *_fill(argv, configs, out)],
                       capture_output=True, text=True, timeout=180, env=env)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2, p.stderr[-1000:]
    assert "Traceback" not in p.stderr
    assert len(lines) == 1 and needle in lines[0], p.stderr[-1000:]
    assert not (out / "result.json").exists()


def test_corpus_size():
    """The issue asks for at least 50 malformed inputs."""
    assert len(API_CASES) + len(CLI_CASES) + 2 >= 50
    assert np.unique([c[0] for c in API_CASES + CLI_CASES]).size == \
        len(API_CASES) + len(CLI_CASES)
