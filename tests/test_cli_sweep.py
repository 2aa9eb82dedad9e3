"""``jaxcomp sweep`` / ``report`` / ``sensitivity`` bad input: exit 2, one line, nothing run."""

import json

import pytest

from jaxcomp.cli import main

HEAD = '''
from jaxcomp.experiment import base_config
from jaxcomp.sweep.grid import product, zip_


def get_config():
    c = base_config()
    c.data.name = "synthetic"
    c.model.name = "mlp"
    c.train.epochs = 1
    return c

'''


def _run(tmp_path, capsys, sweep_body, *extra):
    cfg = tmp_path / "cfg.py"
    cfg.write_text(HEAD + "def get_sweep():\n    return " + sweep_body + "\n")
    out = tmp_path / "out"
    code = main(["sweep", str(cfg), "--out", str(out), "--no-progress", *extra])
    err = capsys.readouterr().err.strip()
    return code, err, out


@pytest.mark.parametrize("body,message", [
    ('product({"train.epoch": [1, 2]})', "unknown config key 'train.epoch' (did you mean "
                                         "'train.epochs'"),
    ('product({"train.epochs": [1, "two"]})', "train.epochs: got 'two' (str)"),
    ('product({"seed": []})', "the grid is empty"),
    ('zip_({"seed": [0, 1]}, {"train.epochs": [1, 2, 3]})', "different lengths"),
    ('product({"seed": [0]}, {"seed": [1]})', "swept twice"),
    ('7', "must return a spec"),
])
def test_bad_sweep_specs_exit_2_before_running(tmp_path, capsys, body, message):
    code, err, out = _run(tmp_path, capsys, body)
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("jaxcomp sweep: error:")
    assert message in err
    assert not (out / "results.jsonl").exists()


def test_bad_grid_and_set_and_chunk(tmp_path, capsys):
    code, err, _ = _run(tmp_path, capsys, '{"seed": [0]}', "--grid", "seeed=[1,2]")
    assert code == 2 and "did you mean 'seed'" in err
    code, err, _ = _run(tmp_path, capsys, '{"seed": [0]}', "--set", "train.epochs=x")
    assert code == 2 and "train.epochs" in err
    code, err, _ = _run(tmp_path, capsys, '{"seed": [0]}', "--chunk-size", "0")
    assert code == 2 and "--chunk-size" in err


def test_directory_of_another_config_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"sweep_hash": "0123",
                                                   "config_path": "configs/other.py"}))
    (out / "results.jsonl").write_text('{"key": "x", "status": "ok"}\n')
    code, err, _ = _run(tmp_path, capsys, '{"seed": [0]}')
    assert code == 2 and "holds results of another sweep (config 'configs/other.py'" in err
    assert (out / "results.jsonl").read_text() == '{"key": "x", "status": "ok"}\n'


def test_missing_config_and_bad_value_in_config(tmp_path, capsys):
    assert main(["sweep", str(tmp_path / "nope.py")]) == 2
    assert "does not exist" in capsys.readouterr().err
    code, err, _ = _run(tmp_path, capsys, '{"train.optimizer": ["adamm"]}')
    assert code == 2 and "train.optimizer: got 'adamm'" in err


def test_report_bad_inputs(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "holds no results.jsonl" in capsys.readouterr().err
