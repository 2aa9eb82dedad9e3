"""Every experiment config in configs/ (not the paper-table ones, which their tables load)
builds, validates, and expands its sweep into settings — without training anything."""

import pathlib

import pytest

from jaxcomp.experiment.config import load_config
from jaxcomp.experiment.run import validate
from jaxcomp.sweep.grid import expand, load_sweep

CONFIGS = sorted(p for p in (pathlib.Path(__file__).resolve().parents[1] / "configs").glob(
    "*.py") if not p.name.startswith("t"))


def test_there_is_a_config_per_use_case():
    names = {p.stem for p in CONFIGS}
    assert {"sweep_prune_lenet300", "sweep_quant_bits", "sweep_rank_lenet300",
            "sweep_kd_temperature", "sweep_pipeline"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_validates_and_its_sweep_expands(path):
    cfg = load_config(str(path))
    validate(cfg)
    doc = path.read_text().split('"""')[1]
    assert "jaxcomp " in doc, "the docstring gives the run command"
    spec = load_sweep(str(path))
    settings = expand(cfg, spec)
    assert settings
    for setting, c in settings:
        validate(c)
        for key, value in setting.items():
            node = c
            for part in key.split("."):
                node = node[part]
            assert node == value, (key, value)
