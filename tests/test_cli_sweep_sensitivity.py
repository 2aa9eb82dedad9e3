"""``jaxcomp sensitivity`` wiring (with a stand-in library), level checks, missing library."""

import sys
import types

import pytest

from jaxcomp.cli import main
from jaxcomp.commands import sensitivity as cmd
from tests.tiny_configs import tiny_config_source

CONFIG = tiny_config_source(features=8, epochs=1)


@pytest.fixture
def config(tmp_path):
    p = tmp_path / "c.py"
    p.write_text(CONFIG)
    return str(p)


def test_cli_passes_trained_model_and_levels_and_writes_table(tmp_path, config, capsys,
                                                              monkeypatch):
    calls = {}

    def sensitivity(model, params, model_state, dataset, levels, where=None, kind="prune"):
        calls.update(levels=levels, where=where, kind=kind, layers=sorted(params),
                     n_test=len(dataset.x_test), model=model.name)
        return [{"layer": f"{k}/kernel", "level": lv, "accuracy": 1.0 - lv / (i + 2)}
                for i, k in enumerate(sorted(params)) for lv in levels]

    def write_csv(rows, path):
        open(path, "w").write("layer,level,accuracy\n" + "".join(
            f"{r['layer']},{r['level']},{r['accuracy']}\n" for r in rows))

    lib = types.SimpleNamespace(sensitivity=sensitivity, write_csv=write_csv)
    monkeypatch.setitem(sys.modules, cmd.LIBRARY, lib)
    out = tmp_path / "sens"
    assert main(["sensitivity", config, "--levels", "0.5,0.9", "--where", "Dense_0/kernel",
                 "--out", str(out), "--no-progress"]) == 0
    assert calls == {"levels": [0.5, 0.9], "where": ("Dense_0/kernel",), "kind": "prune",
                     "layers": ["Dense_0", "Dense_1"], "n_test": 256, "model": "mlp"}
    text = capsys.readouterr().out
    assert "| layer | s=0.5 | s=0.9 |" in text
    assert f"| Dense_0/kernel | {1 - 0.5 / 2:.4f} | {1 - 0.9 / 2:.4f} |" in text
    assert f"| Dense_1/kernel | {1 - 0.5 / 3:.4f} | {1 - 0.9 / 3:.4f} |" in text
    assert (out / "sensitivity.csv").read_text().count("\n") == 5
    assert "Dense_1/kernel" in (out / "sensitivity.md").read_text()


@pytest.mark.parametrize("kind,levels,message", [
    ("prune", "0.5,1.0", "allowed range [0, 1)"),
    ("prune", "a,b", "expected comma-separated numbers"),
    ("quant", "4,2.5", "bit widths are integers"),
    ("quant", "0", "allowed range [1, 32]"),
])
def test_bad_levels_exit_2(config, capsys, monkeypatch, kind, levels, message):
    monkeypatch.setitem(sys.modules, cmd.LIBRARY, types.SimpleNamespace(sensitivity=None))
    assert main(["sensitivity", config, "--kind", kind, "--levels", levels]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_default_levels():
    assert cmd.parse_levels(None, "quant") == [8, 6, 4, 3, 2]
    assert cmd.parse_levels("8, 4", "quant") == [8, 4]
    assert all(0 < s < 1 for s in cmd.parse_levels(None, "prune"))


def test_missing_library_is_a_clear_error(config, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, cmd.LIBRARY, None)  # as if the module did not exist
    assert main(["sensitivity", config]) == 2
    assert "needs jaxcomp.prune.sensitivity" in capsys.readouterr().err


def test_real_library_end_to_end(tmp_path, config, capsys):
    pytest.importorskip(cmd.LIBRARY)
    out = tmp_path / "real"
    assert main(["sensitivity", config, "--kind", "quant", "--levels", "8,2", "--out", str(out),
                 "--set", "train.epochs=3", "--set", "train.learning_rate=0.01",
                 "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "| layer | bits=8 | bits=2 |" in text
    rows = [line for line in text.splitlines() if line.startswith("| Dense_")]
    assert [r.split(" | ")[0] for r in rows] == ["| Dense_0/kernel", "| Dense_1/kernel"]
    for r in rows:  # a trained model: 8-bit layers keep it well above chance (0.25)
        a8, a2 = (float(v) for v in r.strip(" |").split(" | ")[1:])
        assert a8 > 0.5 and 0.0 <= a2 <= 1.0
    assert (out / "sensitivity.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "sensitivity.csv").read_text().count("\n") >= 5
