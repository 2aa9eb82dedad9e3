"""Every config key is checked before work starts, on families switched on or off."""

import pytest

from jaxcomp.core.errors import ConfigError
from jaxcomp.experiment import base_config
from jaxcomp.experiment.validate import check_keys_take_effect, validate_config
from jaxcomp.sweep.grid import expand, product


@pytest.mark.parametrize("key, value, family", [
    ("prune.sparsity", 1.5, "prune"),
    ("quant.bits", 9, "quant"),
    ("quant.observer", "median", "quant"),
    ("decompose.energy", 0.0, "decompose"),
    ("distill.temperature", -1.0, "distill"),
])
def test_bad_value_on_a_family_that_is_off_names_the_family(key, value, family):
    cfg = base_config()
    section, leaf = key.split(".")
    cfg[section][leaf] = value
    assert cfg[family].method == "none"
    with pytest.raises(ConfigError) as e:
        validate_config(cfg)
    msg = str(e.value)
    assert msg.startswith(f"{key}: got {value!r}") or msg.startswith(f"{key}: got {value}")
    assert f"the {family} family is off" in msg and f"--set {family}.method=" in msg


def test_bad_value_on_a_family_that_is_on_has_no_off_hint():
    cfg = base_config()
    cfg.quant.method, cfg.quant.bits = "ptq", 9
    with pytest.raises(ConfigError, match=r"quant\.bits: got 9") as e:
        validate_config(cfg)
    assert "is off" not in str(e.value)


def test_defaults_and_good_values_pass():
    cfg = base_config()
    validate_config(cfg)
    cfg.prune.method, cfg.prune.sparsity = "magnitude", 0.5
    validate_config(cfg)


def test_sweeping_a_key_of_a_family_that_is_off_is_an_error():
    with pytest.raises(ConfigError, match=r"quant\.bits: has no effect because the quant "
                                          r"family is off"):
        expand(base_config(), product({"quant.bits": [8, 4]}))


def test_sweeping_a_key_whose_family_is_on_in_some_settings_is_allowed():
    runs = expand(base_config(), product({"quant.method": ["none", "ptq"],
                                          "quant.bits": [8, 4]}))
    assert [(c.quant.method, c.quant.bits) for _, c in runs] == [
        ("none", 8), ("none", 4), ("ptq", 8), ("ptq", 4)]


def test_method_and_base_keys_always_take_effect():
    check_keys_take_effect(["quant.method", "seed", "train.epochs"], [base_config()])


@pytest.mark.parametrize("args, needle", [
    (["train", "configs/lenet300_fmnist.py", "--set", "prune.sparsity=1.5"],
     "prune.sparsity: has no effect because the prune family is off"),
    (["train", "configs/lenet300_fmnist.py", "--set", "quant.bits=9"], "quant.bits: has no"),
    (["sweep", "configs/demo_sweep.py", "--grid", "quant.bits=[9,4]"], "quant"),
])
def test_cli_refuses_before_any_work(args, needle, tmp_path, capsys):
    from jaxcomp.cli import main

    assert main([*args, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert needle in err and "is off" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_cli_refuses_setting_a_key_of_a_family_that_is_off(tmp_path, capsys):
    from jaxcomp.cli import main

    out = tmp_path / "out"
    assert main(["train", "configs/lenet300_fmnist.py", "--set", "quant.bits=4",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "quant.bits: has no effect because the quant family is off" in err
    assert "--set quant.method=<" in err and not out.exists()


def test_a_config_file_is_executed_once_for_its_config_and_its_sweep(tmp_path):
    from jaxcomp.experiment.config import load_config
    from jaxcomp.sweep.grid import load_sweep

    log = tmp_path / "executions.txt"
    path = tmp_path / "cfg.py"
    path.write_text(
        "import pathlib\n"
        f"pathlib.Path({str(log)!r}).open('a').write('x')\n"
        "from jaxcomp.experiment import base_config\n"
        "def get_config():\n    return base_config()\n"
        "def get_sweep():\n    return {'seed': [0, 1]}\n")
    cfg, spec = load_config(str(path)), load_sweep(str(path))
    assert cfg.seed == 0 and len(spec) == 2
    assert log.read_text() == "x"


@pytest.mark.parametrize("make, needle", [
    (lambda: __import__("jaxcomp.prune", fromlist=["x"]).magnitude("0.5"),
     r"prune.sparsity: got '0.5'; expected a number, not text"),
    (lambda: __import__("jaxcomp.quant", fromlist=["x"]).weight_quant(bits="8").init(
        {"Dense_0": {"kernel": __import__("jax.numpy").numpy.ones((4, 4))}}),
     r"bits: got '8'; expected a number"),
    (lambda: __import__("jaxcomp.prune", fromlist=["x"]).magnitude(0.5).init({}),
     r"prune.where: no leaf selected"),
])
def test_numbers_given_as_text_and_empty_params_are_refused(make, needle):
    with pytest.raises(ConfigError, match=needle):
        make()


def test_factorize_nnx_is_exported():
    from jaxcomp import decompose
    from jaxcomp.decompose.nnx_layers import factorize_nnx

    assert decompose.factorize_nnx is factorize_nnx
