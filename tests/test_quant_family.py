"""The quant family inside run_experiment (tiny), its config checks and sweep contract."""

import jax
import numpy as np
import pytest

from jaxcomp.core.errors import ConfigError
from jaxcomp.experiment import base_config, run_experiment
from jaxcomp.experiment.config import apply_overrides
from jaxcomp.quant import family


def _cfg(**quant):
    cfg = base_config()
    cfg.data.name = "digits"
    cfg.model.name = "mlp"
    cfg.train.epochs = 1
    for k, v in quant.items():
        cfg.quant[k] = v
    return cfg


def test_qat_with_activations_and_export():
    rec = run_experiment(_cfg(method="qat", bits=4, act_bits=8, keep_first_last_8bit=True))
    m, led = rec["metrics"], rec["ledger"]
    assert m["quant_test_accuracy"] == m["test_accuracy"] > 0.3
    assert led["fp32_bytes"] / led["int_bytes"] > 2.5


def test_pruned_then_quantized_export_counts_only_nonzero_codes():
    cfg = _cfg(method="ptq", bits=8)
    cfg.prune.method, cfg.prune.schedule, cfg.prune.sparsity = "magnitude", "one_shot", 0.9
    led = run_experiment(cfg)["ledger"]
    n_dense = led["int_bytes_dense"]
    # 90% zeros: a bitmask (1/8 byte) and ~0.1 byte per kernel weight instead of 1 byte
    assert led["int_bytes"] < 0.45 * n_dense
    plain = run_experiment(_cfg(method="ptq", bits=8))["ledger"]
    assert plain["int_bytes"] == plain["int_bytes_dense"] == n_dense


def test_adaround_method_runs():
    rec = run_experiment(_cfg(method="adaround", bits=4, adaround_iters=20, calib_batches=2))
    assert 0.0 <= rec["metrics"]["quant_test_accuracy"] <= 1.0


def test_config_errors():
    cfg = base_config()
    with pytest.raises(ConfigError, match="quant.bits"):
        run_experiment(_cfg(method="ptq", bits=9))
    with pytest.raises(ConfigError, match="quant.method"):
        run_experiment(_cfg(method="gptq"))
    with pytest.raises(ConfigError, match="quant.act_bits"):
        apply_overrides(cfg, ["quant.act_bits=8.5"])


def test_vector_keys_bits_live_in_state():
    """Two QAT transforms built with different bits act the same given the same state."""
    from jaxcomp.quant.transform import weight_quant
    from tests.conformance import linen_params

    assert family.VECTOR_KEYS == ("bits",)
    params = linen_params()
    t4, t8 = weight_quant(4), weight_quant(8)
    s4 = t4.init(params)
    a = t4.apply(params, s4)
    b = t8.apply(params, s4)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
