"""Grid expansion: product/zip order, dict shorthand, CLI axes, and every bad-input error."""

import itertools

import pytest

from jaxcomp.core.errors import ConfigError
from jaxcomp.experiment import base_config
from jaxcomp.sweep.grid import (
    apply_setting,
    axis,
    config_hash,
    expand,
    from_overrides,
    load_sweep,
    product,
    zip_,
)


def test_product_order_matches_itertools():
    a, b, c = [0.1, 0.5, 0.9], [0, 1], ["x", "y"]
    spec = product({"p": a}, {"seed": b}, axis("m", c))
    got = [(s["p"], s["seed"], s["m"]) for s in spec.settings()]
    assert got == list(itertools.product(a, b, c))
    assert spec.keys() == ["p", "seed", "m"]


def test_zip_pairs_values_and_nests_in_product():
    spec = product(zip_({"a": [1, 2, 3], "b": [4, 5, 6]}), {"seed": [7, 8]})
    got = [(s["a"], s["b"], s["seed"]) for s in spec.settings()]
    assert got == [(a, b, s) for a, b in zip([1, 2, 3], [4, 5, 6], strict=True) for s in [7, 8]]
    assert len(spec) == 6


def test_dict_with_two_keys_is_a_product_inside_product():
    assert len(product({"a": [1, 2], "b": [3, 4, 5]})) == 6
    assert len(zip_({"a": [1, 2], "b": [3, 4]})) == 2


def test_expand_applies_values_with_type_widening():
    runs = expand(base_config(), product({"train.learning_rate": [1, 0.5], "seed": [3]}))
    assert [c.train.learning_rate for _, c in runs] == [1.0, 0.5]
    assert all(isinstance(c.train.learning_rate, float) for _, c in runs)
    assert [c.seed for _, c in runs] == [3, 3]
    base = base_config()
    assert base.train.learning_rate == 1e-3  # the base is not modified


def test_expand_without_spec_is_one_run():
    cfg = base_config()
    assert expand(cfg, None) == [({}, cfg)]


def test_unknown_key_suggests_nearest():
    with pytest.raises(ConfigError, match=r"train\.learnin_rate.*did you mean 'train\."
                                          r"learning_rate'"):
        expand(base_config(), product({"train.learnin_rate": [0.1]}))


def test_wrong_type_names_key_and_value():
    with pytest.raises(ConfigError, match=r"train\.epochs: got 'ten' \(str\); expected a int"):
        expand(base_config(), product({"train.epochs": [1, "ten"]}))
    with pytest.raises(ConfigError, match=r"train\.epochs: got 1\.5"):
        expand(base_config(), product({"train.epochs": [1.5]}))


def test_empty_grid_is_refused():
    with pytest.raises(ConfigError, match=r"grid is empty.*seed"):
        expand(base_config(), product({"seed": []}, {"train.epochs": [1]}))


def test_zip_of_different_lengths_is_refused():
    with pytest.raises(ConfigError, match=r"different lengths \(a: 2, b: 3\)"):
        zip_({"a": [1, 2]}, {"b": [1, 2, 3]})


def test_key_swept_twice_and_bad_values_are_refused():
    with pytest.raises(ConfigError, match="swept twice"):
        product({"seed": [0]}, {"seed": [1]})
    with pytest.raises(ConfigError, match="values must be a list"):
        axis("seed", "01")
    with pytest.raises(ConfigError, match="expected axis"):
        product(3)


def test_from_overrides_and_scalar_value():
    spec = from_overrides(["seed=[0, 1]", "train.epochs=2"])
    assert spec.settings() == [{"seed": 0, "train.epochs": 2}, {"seed": 1, "train.epochs": 2}]
    assert from_overrides([]) is None
    with pytest.raises(ConfigError, match="expected key="):
        from_overrides(["seed"])


def test_apply_setting_is_locked_copy():
    cfg = base_config()
    out = apply_setting(cfg, {"seed": 5})
    assert out.seed == 5 and cfg.seed == 0
    with pytest.raises(AttributeError):
        out.new_key = 1


def test_config_hash_depends_on_values_not_order():
    assert config_hash({"a": 1, "b": 2}) == config_hash({"b": 2, "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})
    c1, c2 = base_config(), base_config()
    assert config_hash(c1.to_dict()) == config_hash(c2.to_dict())
    c2.seed = 1
    assert config_hash(c1.to_dict()) != config_hash(c2.to_dict())


def test_load_sweep_from_file(tmp_path):
    p = tmp_path / "c.py"
    p.write_text("from jaxcomp.sweep.grid import product\n"
                 "def get_config():\n    pass\n"
                 "def get_sweep():\n    return {'seed': [0, 1, 2]}\n")
    assert len(load_sweep(str(p))) == 3
    q = tmp_path / "d.py"
    q.write_text("def get_config():\n    pass\n")
    assert load_sweep(str(q)) is None
    r = tmp_path / "e.py"
    r.write_text("def get_sweep():\n    return 3\n")
    with pytest.raises(ConfigError, match="must return a spec"):
        load_sweep(str(r))
