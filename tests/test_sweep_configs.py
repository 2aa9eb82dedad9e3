"""Every sweep config in configs/ loads, expands and passes validation (nothing is run)."""

import pathlib

import pytest

from jaxcomp.experiment.config import load_config
from jaxcomp.sweep.grid import load_sweep
from jaxcomp.sweep.runner import SweepRunner

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = sorted(ROOT.glob("configs/sweep_*.py")) + [ROOT / "configs" / "demo_sweep.py"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_sweep_config_expands_and_validates(path, tmp_path):
    cfg = load_config(str(path))
    spec = load_sweep(str(path))
    assert spec is not None and len(spec) >= 2
    runner = SweepRunner(cfg, spec, str(tmp_path), progress=False)
    assert len(runner.runs) == len(spec)
    assert len({r.key for r in runner.runs}) == len(spec)  # every setting is a distinct run
    doc = path.read_text().split('"""')[1]
    assert "jaxcomp sweep" in doc and "Expected" in doc


def test_there_is_a_sweep_config_per_use_case():
    names = {p.stem for p in CONFIGS}
    assert {"sweep_prune_lenet300", "sweep_quant_bits", "sweep_rank_lenet300",
            "sweep_kd_temperature", "sweep_pipeline"} <= names
