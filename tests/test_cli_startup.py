"""The ``jaxcomp`` command's start-up and conventions: help, version and config errors
without importing JAX; no command -> help on stderr, exit 2; progress on stderr; every
option's help states its default; the lazy package keeps its public API."""

import argparse
import os
import subprocess
import sys

import pytest

from jaxcomp.cli import build_parser
from jaxcomp.experiment import families
from jaxcomp.experiment.config import family_defaults

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_CFG = "configs/lenet300_fmnist.py"
HEAVY = ("jax", "flax", "optax", "orbax", "jaxlib")
# Runs the CLI in a fresh interpreter, then reports which heavy packages it imported.
PROBE = ("import sys\nfrom jaxcomp.cli import main\nrc = main(sys.argv[1:])\n"
         f"heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))\n"
         "print('RC', rc, 'HEAVY', ','.join(heavy) or '-', file=sys.stderr)")


def probe(*args):
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                       timeout=120, cwd=ROOT, env=env)
    last = r.stderr.strip().splitlines()[-1].split()
    assert last[0] == "RC", r.stderr
    return int(last[1]), last[3], r


@pytest.mark.parametrize("args, rc, needle", [
    (["--help"], 0, "sensitivity"),
    (["train", "--help"], 0, "--no-progress"),
    (["sweep", "--help"], 0, "--chunk-size"),
    (["--version"], 0, "0."),
    (["train", TRAIN_CFG, "--set", "prune.sparsty=0.5"], 2, "did you mean 'prune.sparsity'"),
    (["train", TRAIN_CFG, "--set", "train.epochs=abc"], 2, "train.epochs: got 'abc'"),
    (["train", "configs/nope.py"], 2, "does not exist"),
    (["sweep", TRAIN_CFG, "--set", "quant.bitz=4"], 2, "did you mean 'quant.bits'"),
    (["train", TRAIN_CFG, "--set", "train.learning_rate=-1"], 2, "allowed range (0, inf]"),
    (["train", TRAIN_CFG, "--set", "train.optimizer=adagrad"], 2, "train.optimizer"),
    (["train", TRAIN_CFG, "--set", "data.name=imagenet"], 2, "data.name: got 'imagenet'"),
    (["sensitivity", TRAIN_CFG, "--set", "train.epochs=-1"], 2, "train.epochs: got -1"),
    (["sweep", "configs/demo_sweep.py", "--set", "train.epohcs=1"], 2, "did you mean"),
    (["train", TRAIN_CFG, "--set", "quant.bits=4"], 2, "the quant family is off"),
    (["train", TRAIN_CFG, "--set", "prune.method=magnitude", "--set", "prune.sparsity=1.5"], 2,
     "prune.sparsity: got 1.5; allowed range [0, 1)"),
    (["train", TRAIN_CFG, "--set", "quant.method=ptq", "--set", "quant.bits=9"], 2,
     "quant.bits: got 9"),
    (["train", TRAIN_CFG, "--set", "model.name=lenet301"], 2, "did you mean 'lenet300'"),
    (["train", TRAIN_CFG, "--set", "distill.method=kd", "--set", "distill.alpha=2"], 2,
     "distill.alpha: got 2"),
    (["train", TRAIN_CFG, "--set", "prune.sparsity=1.5"], 2, "the prune family is off"),
    (["sweep", "configs/demo_sweep.py", "--grid", "train.learning_rate=[0.1,-1.0]"], 2,
     "train.learning_rate: got -1.0"),
    (["report", "no/such/dir"], 2, "no/such/dir"),
])
def test_help_version_and_config_errors_do_not_import_jax(args, rc, needle):
    code, heavy, r = probe(*args)
    assert code == rc
    assert needle in r.stdout + r.stderr
    assert heavy == "-", f"{' '.join(args)} imported {heavy}"


def test_import_jaxcomp_is_light_and_public_api_loads_on_use():
    code = ("import sys, jaxcomp as jc\n"
            "assert 'jax' not in sys.modules, 'import jaxcomp imported jax'\n"
            "import jaxcomp.core.select  # the submodule must not hide the function\n"
            "from jaxcomp.core import select\n"
            "import jax.numpy as jnp\n"
            "p = {'Dense_0': {'kernel': jnp.ones((3, 2)), 'bias': jnp.ones(2)}}\n"
            "assert callable(select) and select is jc.select, select\n"
            "assert jc.selected_paths(p) == ['Dense_0/kernel']\n"
            "t = jc.chain(jc.identity(), jc.identity())\n"
            "assert float(t.apply(p, t.init(p))['Dense_0']['kernel'].sum()) == 6.0\n"
            "assert float(jc.schedules.constant(0.5)(3)) == 0.5\n"
            "assert jc.prune.__name__ == 'jaxcomp.prune' and 'chain' in dir(jc)\n"
            "print('ok')")
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120, cwd=ROOT, env=env)
    assert r.stdout.strip() == "ok", r.stderr


@pytest.mark.parametrize("name, module", sorted(families.FAMILY_MODULES.items()))
def test_family_sections_are_the_families_config(name, module):
    """The JAX-free section a family's config comes from is the one the family uses,
    and its lists of allowed names match the libraries' registries."""
    import importlib

    fam = importlib.import_module(module)
    section = families.sections()[name]
    assert fam.default_config is section.default_config
    assert fam.validate is section.validate
    assert fam.VECTOR_KEYS == section.VECTOR_KEYS
    assert set(family_defaults()) == set(families.available())


def test_section_name_lists_match_the_registries():
    from jaxcomp.decompose._checks import METHODS as DECOMPOSITIONS
    from jaxcomp.decompose.plan import SELECTIONS
    from jaxcomp.distill.objective import METHODS as LOSSES
    from jaxcomp.experiment.sections import MODEL_NAMES, decompose, distill, prune, quant
    from jaxcomp.models import MODELS
    from jaxcomp.prune.scores import SCORES
    from jaxcomp.quant.observers import OBSERVERS
    from jaxcomp.quant.uniform import SUPPORTED_BITS

    assert MODEL_NAMES == MODELS
    assert decompose.DECOMPOSITIONS == DECOMPOSITIONS and decompose.SELECTIONS == SELECTIONS
    assert distill.LOSS_METHODS == LOSSES
    assert quant.SUPPORTED_BITS == SUPPORTED_BITS and quant.OBSERVERS == OBSERVERS
    assert tuple(SCORES)[:len(prune.BUILTIN_SCORES)] == prune.BUILTIN_SCORES
    assert prune.methods() == ("none", *SCORES, "set", "rigl")  # live once loaded


BAD_VALUES = ["train.epochs=-1", "train.batch_size=0", "train.optimizer=adagrad",
              "train.learning_rate=0", "train.weight_decay=-0.1", "train.scan=maybe",
              "data.name=imagenet", "data.limit_train=-5", "data.limit_test=-1"]


@pytest.mark.parametrize("override", BAD_VALUES)
def test_early_checks_say_what_the_run_validation_says(override):
    from jaxcomp.core.errors import ConfigError
    from jaxcomp.experiment import run
    from jaxcomp.experiment.config import OPTIMIZERS, apply_overrides, base_config, check_values

    assert OPTIMIZERS == run.OPTIMIZERS
    cfg = base_config()
    apply_overrides(cfg, [override])
    with pytest.raises(ConfigError) as early:
        check_values(cfg)
    with pytest.raises(ConfigError) as late:
        run.validate(cfg)
        run.load_data(cfg)  # data.limit_* are checked when the data is loaded
    assert str(early.value) == str(late.value)


def test_no_command_prints_help_on_stderr_and_exits_2():
    r = subprocess.run([sys.executable, "-m", "jaxcomp.cli"], capture_output=True, text=True,
                       timeout=120, cwd=ROOT)
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.startswith("usage: jaxcomp") and "train" in r.stderr


def _subparsers(parser):
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


@pytest.mark.parametrize("command", ["train", "sweep", "report", "sensitivity", "reproduce"])
def test_every_option_help_states_its_default(command):
    p = _subparsers(build_parser()[0])[command]
    fmt = p.formatter_class(p.prog)
    missing = []
    for a in p._actions:
        if not a.option_strings or a.nargs == 0 or isinstance(a, argparse._HelpAction):
            continue  # positionals, flags
        if isinstance(a, argparse._AppendAction) and a.default in (None, []):
            continue  # repeatable, empty unless given
        if "default" not in fmt._get_help_string(a):
            missing.append(a.option_strings[0])
    assert not missing, f"jaxcomp {command}: no default shown for {missing}"


def test_help_texts_show_concrete_defaults():
    subs = _subparsers(build_parser()[0])
    sweep = " ".join(subs["sweep"].format_help().split())
    assert "(default: runs/<config name>)" in sweep and "(default: 32)" in sweep
    report = " ".join(subs["report"].format_help().split())
    assert "(default: test_accuracy)" in report
    sens = " ".join(subs["sensitivity"].format_help().split())
    assert "(default: prune)" in sens and "runs/sensitivity_<config name>" in sens


def test_train_progress_goes_to_stderr_not_stdout(tmp_path):
    r = subprocess.run([sys.executable, "-m", "jaxcomp.cli", "train", TRAIN_CFG,
                        "--set", "data.name=digits", "--set", "train.epochs=2",
                        "--set", "train.batch_size=64"],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    out = r.stdout.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("result: test_accuracy="), r.stdout
    assert "2/2 epochs" in r.stderr
