"""The jaxcomp command: help, a real training run, and bad inputs (one line, exit 2)."""

import json
import subprocess
import sys

import pytest

from jaxcomp.cli import main
from jaxcomp.experiment.config import apply_overrides, base_config, load_config

TRAIN_CFG = "configs/lenet300_fmnist.py"


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "jaxcomp.cli", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd)


def test_help_lists_train():
    r = run_cli("--help")
    assert r.returncode == 0 and "train" in r.stdout


def test_train_on_digits_writes_result(tmp_path):
    out = tmp_path / "run"
    r = run_cli("train", TRAIN_CFG, "--set", "data.name=digits", "--set", "train.epochs=3",
                "--set", "train.batch_size=64", "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1].startswith("result: test_accuracy=")
    rec = json.loads((out / "result.json").read_text())
    assert rec["metrics"]["test_accuracy"] > 0.8
    assert rec["ledger"]["params"] == 64 * 300 + 300 + 300 * 100 + 100 + 1010


@pytest.mark.parametrize("args, needle", [
    (["train", "configs/nope.py"], "does not exist"),
    (["train", TRAIN_CFG, "--set", "train.epohcs=3"], "did you mean 'train.epochs'"),
    (["train", TRAIN_CFG, "--set", "train.epochs=abc"], "expected a int"),
    (["train", TRAIN_CFG, "--set", "model.name=lenet7"], "allowed:"),
    (["train", TRAIN_CFG, "--set", "data.name=imagenet"], "data.name"),
    (["train", TRAIN_CFG, "--set", "train.learning_rate=-1"], "allowed range"),
    (["train", TRAIN_CFG, "--set", "train.optimizer=adagrad"], "train.optimizer"),
    (["train", TRAIN_CFG, "--set", "noequals"], "expected key=value"),
    (["train", TRAIN_CFG, "--set", "data.name=fashion_mnist", "--set",
      "data.data_dir=/nonexistent"], "does not hold"),
])
def test_bad_input_one_line_exit_2(args, needle):
    r = run_cli(*args)
    assert r.returncode == 2
    assert needle in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_main_returns_2_in_process():
    assert main(["train", "configs/does_not_exist.py"]) == 2


def test_overrides_keep_types():
    cfg = base_config()
    apply_overrides(cfg, ["train.learning_rate=1", "seed=3", "train.scan=off"])
    assert cfg.train.learning_rate == 1.0 and isinstance(cfg.train.learning_rate, float)
    assert cfg.seed == 3 and cfg.train.scan == "off"


def test_config_file_is_locked():
    cfg = load_config(TRAIN_CFG)
    with pytest.raises(AttributeError):
        cfg.train.not_a_key = 1


def test_train_data_parallel_mesh_matches_single_device(tmp_path):
    import os

    args = ["train", TRAIN_CFG, "--set", "data.name=digits", "--set", "train.epochs=1",
            "--set", "train.batch_size=64", "--no-progress"]
    single = run_cli(*args, "--out", str(tmp_path / "a"))
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    multi = subprocess.run([sys.executable, "-m", "jaxcomp.cli", *args, "--mesh", "data=2",
                            "--out", str(tmp_path / "b")], capture_output=True, text=True,
                           timeout=300, env=env)
    assert single.returncode == 0 and multi.returncode == 0, multi.stderr
    a = json.loads((tmp_path / "a" / "result.json").read_text())["metrics"]
    b = json.loads((tmp_path / "b" / "result.json").read_text())["metrics"]
    assert abs(a["test_accuracy"] - b["test_accuracy"]) < 1e-6
    assert abs(a["test_nll"] - b["test_nll"]) < 1e-4
