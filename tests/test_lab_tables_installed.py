"""The paper tables ship inside the package: a built wheel holds every table and its
config, and from an installed (non-editable) copy outside any checkout the tables load,
and quick runs write under ``runs/`` rather than into tracked files."""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest

from jaxcomp.cli import main
from jaxcomp.commands import reproduce
from jaxcomp.experiment.paper_table import Claim, TableResult, load_table_config, tables

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_every_table_has_a_config_and_a_checkout_script():
    names = tables()
    assert list(names) == [f"T{i}" for i in range(1, len(names) + 1)] and len(names) >= 9
    for key, module in names.items():
        stem = module.rsplit(".", 1)[1]
        cfg = load_table_config(stem)
        assert cfg.name == stem
        script = (ROOT / "experiments" / f"{stem}.py").read_text()
        assert f'main("{key}")' in script
        # configs/ re-exports the shipped config
        assert f"jaxcomp.lab.tables.configs.{stem}" in (ROOT / "configs" / f"{stem}.py").read_text()


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The package built as a wheel and unpacked into a directory of its own."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"  # a copy: building writes build/ and egg-info beside the sources
    shutil.copytree(ROOT / "jaxcomp", src / "jaxcomp",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                        "-q", "-w", str(tmp), str(src)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"building the wheel failed:\n{r.stderr[-2000:]}")
    wheel = next(tmp.glob("jaxcomp-*.whl"))
    site = tmp / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
        names = set(z.namelist())
    return site, names


def test_wheel_holds_the_tables_and_their_configs(installed):
    _, names = installed
    for module in tables().values():
        stem = module.rsplit(".", 1)[1]
        assert f"jaxcomp/lab/tables/{stem}.py" in names
        assert f"jaxcomp/lab/tables/configs/{stem}.py" in names


def test_installed_copy_outside_a_checkout_finds_every_table(installed, tmp_path):
    site, _ = installed
    code = ("import json, jaxcomp, jaxcomp.experiment.paper_table as pt\n"
            "cfgs = {k: pt.load_table_config(m.rsplit('.', 1)[1]).name "
            "for k, m in pt.tables().items()}\n"
            "print(json.dumps({'file': jaxcomp.__file__, 'checkout': str(pt.checkout_root()), "
            "'quick': str(pt.default_results_dir(True)), "
            "'full': str(pt.default_results_dir(False)), 'cfgs': cfgs, "
            "'t1': pt.load_table('T1').TABLE}))")
    env = {**os.environ, "PYTHONPATH": str(site), "JAX_PLATFORMS": "cpu"}
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["file"].startswith(str(site))
    assert out["checkout"] == "None" and out["t1"] == "T1" and len(out["cfgs"]) == len(tables())
    assert out["quick"] == os.path.join("runs", "reproduce_quick")
    assert out["full"] == os.path.join("runs", "reproduce")


def _fake_table(monkeypatch):
    def load_table(name):
        class Module:
            @staticmethod
            def run(quick=False):
                return TableResult(name, f"title {name}", {}, {"x": 0.0},
                                   [Claim("a", "x holds", 0.0, 0.5, ">=")], quick=quick)
        return Module

    monkeypatch.setattr(reproduce, "load_table", load_table)


def test_quick_run_without_out_writes_under_runs_and_says_smoke_test(tmp_path, monkeypatch,
                                                                     capsys):
    _fake_table(monkeypatch)
    monkeypatch.chdir(tmp_path)
    tracked = ROOT / "docs" / "results"
    before = {p.name: p.stat().st_mtime_ns for p in tracked.iterdir()}
    assert main(["reproduce", "T1", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "smoke test" in out and "FAIL" not in out and "PASS" not in out
    assert (tmp_path / "runs" / "reproduce_quick" / "T1_quick.json").exists()
    assert {p.name: p.stat().st_mtime_ns for p in tracked.iterdir()} == before


def test_full_run_reports_pass_or_fail(tmp_path, monkeypatch, capsys):
    _fake_table(monkeypatch)
    assert main(["reproduce", "T1", "--out", str(tmp_path)]) == 1
    assert "T1 FAIL" in capsys.readouterr().out
