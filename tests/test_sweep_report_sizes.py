"""The report's default size and FLOPs: stored bytes under the real encoding and
effective FLOPs, checked against the quant export, prune storage, sparsity report
and a smaller model built directly; fallbacks for older result stores."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxcomp.cli import main
from jaxcomp.experiment import base_config, run_experiment
from jaxcomp.experiment.ledger import ensure_defaults, forward_flops, tree_bytes
from jaxcomp.models import get_model
from jaxcomp.prune import storage
from jaxcomp.prune.channels import channel_pruner
from jaxcomp.prune.groups import dependency_groups
from jaxcomp.prune.report import effective_flops, sparsity_report
from jaxcomp.quant import family as quant_family
from jaxcomp.quant.export import codes, export_int, int_bytes, is_qleaf, leaf_bits
from jaxcomp.quant.sparse_codes import is_sparse, sparsify
from jaxcomp.sweep.report import write_report
from jaxcomp.sweep.store import ResultStore
from tests.tiny_configs import tiny_config_source


def _code_bytes(qt):
    """Bytes of the integer codes alone (mask excluded), counted from the codes."""
    total = 0
    for leaf in jax.tree.leaves(qt, is_leaf=is_qleaf):
        if not is_qleaf(leaf):
            continue
        q, b = np.asarray(codes(leaf)), leaf_bits(leaf)
        n = int(np.count_nonzero(q)) if is_sparse(leaf) else q.size
        total += -(-n // 2) if b <= 4 else n
    return total


def test_sparsity_x_bits_sweep_reports_the_int_export_size(tmp_path, monkeypatch, capsys):
    seen = {}
    orig = quant_family.after_train

    def capture(cfg, ctx):
        orig(cfg, ctx)
        sp = float(ctx.config.prune.sparsity)
        seen[(sp, int(cfg.bits))] = ctx.artifacts["quant_ptq"].float_params

    monkeypatch.setattr(quant_family, "after_train", capture)
    cfg = tmp_path / "cfg.py"
    cfg.write_text(tiny_config_source(features=32, sweep={"prune.sparsity": [0.5, 0.8],
                                                          "quant.bits": [4, 8]},
                                      extra=('c.prune.method = "magnitude"',
                                             'c.prune.schedule = "one_shot"',
                                             'c.quant.method = "ptq"',
                                             "c.quant.calib_batches = 1")))
    out = tmp_path / "out"
    assert main(["sweep", str(cfg), "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    rep = write_report(out, plots=False)
    assert rep["size_key"] == "stored_bytes" and rep["fallbacks"] == {}
    rows = {(g["prune.sparsity"], g["quant.bits"]): g for g in rep["table"]}
    assert set(rows) == set(seen) == {(s, b) for s in (0.5, 0.8) for b in (4, 8)}
    for sp in (0.5, 0.8):
        qt = {b: sparsify(export_int(seen[(sp, b)], b)) for b in (4, 8)}
        stored = {b: rows[(sp, b)]["stored_bytes"]["mean"] for b in (4, 8)}
        for b in (4, 8):  # the export's own byte count, and its encoding named
            assert stored[b] == int_bytes(qt[b])
            assert rows[(sp, b)]["encoding"] == f"int{b} codes + bitmask"
        # the whole difference is the code part: nibbles vs bytes (~2x), the rest equal
        c4, c8 = _code_bytes(qt[4]), _code_bytes(qt[8])
        assert stored[8] - stored[4] == c8 - c4 > 0
        assert stored[8] - c8 == stored[4] - c4
        assert 1.8 < c8 / c4 < 2.2
    assert "int4 codes + bitmask" in rep["text"] and "`stored_bytes`" in rep["text"]


def _capture_prune(monkeypatch):
    from jaxcomp.prune import family as prune_family

    seen = {}
    orig = prune_family.after_train

    def capture(cfg, ctx):
        orig(cfg, ctx)
        seen.update(params=ctx.fit_result.state.params, model=ctx.model,
                    state=ctx.fit_result.state.model_state, shape=ctx.dataset.input_shape)

    monkeypatch.setattr(prune_family, "after_train", capture)
    return seen


def test_unstructured_prune_ledger_matches_storage_and_sparsity_report(monkeypatch):
    seen = _capture_prune(monkeypatch)
    c = base_config()
    c.data.name, c.model.name, c.train.epochs = "synthetic", "mlp", 1
    with c.unlocked():
        c.model.features = (32,)
    c.prune.method, c.prune.schedule, c.prune.sparsity = "magnitude", "one_shot", 0.7
    led = run_experiment(c)["ledger"]
    p = seen["params"]
    bm = storage.tree_nbytes(storage.encode_tree(p, "bitmask"))
    csr = storage.tree_nbytes(storage.encode_tree(p, "relative", index_bits=5))
    dense = 4 * sum(x.size for x in jax.tree.leaves(p))
    assert led["stored_bytes"] == min(bm, csr, dense) < dense
    assert led["encoding"] == {bm: "fp32 bitmask-sparse", dense: "fp32 dense"}.get(
        led["stored_bytes"], "fp32 CSR (5-bit relative indices)")
    total = sparsity_report(p, model=seen["model"], model_state=seen["state"],
                            input_shape=seen["shape"])[-1]
    assert led["units_removed"] == 0 and led["flops_shrunk"] == led["flops"]
    assert led["flops_sparse"] == led["flops"] - total["flops_before"] + total["flops_after"]
    assert led["flops_effective"] == led["flops_sparse"] < led["flops"]
    assert led["flops_counting"].startswith("sparse")


def test_structured_pruning_effective_flops_are_the_smaller_models():
    m = get_model("mlp", input_shape=(8,), num_classes=3, features=(12, 8))
    x = jnp.ones((1, 8))
    p, s = m.init(jax.random.key(0), x)
    t = channel_pruner(dependency_groups(m, p, s, x), 0.5)
    pruned = t.apply(p, t.init(p))
    small = get_model("mlp", input_shape=(8,), num_classes=3, features=(6, 4))
    sp, ss = small.init(jax.random.key(1), x)
    want = forward_flops(small, sp, ss, (8,))
    e = effective_flops(m, pruned, s, (8,))
    assert e["units_removed"] == 10
    assert e["flops_shrunk"] == want < forward_flops(m, p, s, (8,))
    assert e["flops_sparse"] == want  # no zero weights are left in the smaller model


def test_decompose_ledger_is_the_factorized_model(monkeypatch):
    from jaxcomp.decompose import family as dec_family

    seen = {}
    orig = dec_family.after_train

    def capture(cfg, ctx):
        orig(cfg, ctx)
        seen.update(ctx.artifacts["decompose"], shape=ctx.dataset.input_shape)

    monkeypatch.setattr(dec_family, "after_train", capture)
    c = base_config()
    c.data.name, c.model.name, c.train.epochs = "synthetic", "mlp", 1
    with c.unlocked():
        c.model.features = (64,)
    c.decompose.method, c.decompose.rank = "svd", 4
    c.decompose.finetune_epochs, c.decompose.measure_batch = 0, 0
    led = run_experiment(c)["ledger"]
    assert led["encoding"] == "fp32 factors"
    assert led["stored_bytes"] == tree_bytes(seen["params"]) < led["bytes_fp32"]
    small = forward_flops(seen["model"], seen["params"], seen["model_state"], seen["shape"])
    assert led["flops_effective"] == small < led["flops"]
    assert led["flops_counting"] == "factorized layers"


def test_ensure_defaults_keeps_what_a_family_set():
    led = ensure_defaults({"bytes_fp32": 400, "flops": 9.0, "stored_bytes": 50,
                           "encoding": "int8 codes"})
    assert (led["stored_bytes"], led["encoding"]) == (50, "int8 codes")
    assert (led["flops_effective"], led["flops_counting"]) == (9.0, "dense")


def _old_store(d):
    s = ResultStore(d)
    s.claim("h", {"config_path": "old.py", "swept_keys": ["quant.bits", "seed"]})
    for bits, ib in ((4, 22134), (8, 34690), (0, None)):
        led = {"params": 1000, "nonzeros": 500, "bytes_fp32": 4000, "bytes": 2500,
               "flops": 2000.0}
        if ib is not None:
            led["int_bytes"] = ib
        s.append({"key": f"k{bits}", "status": "ok", "seed": 0,
                  "setting": {"quant.bits": bits, "seed": 0},
                  "config": {"seed": 0, "quant": {"bits": bits}},
                  "metrics": {"test_accuracy": 0.9 - bits / 100}, "ledger": led})


def test_old_store_falls_back_and_says_which_key(tmp_path):
    _old_store(tmp_path)
    rep = write_report(tmp_path, plots=False)
    assert rep["fallbacks"] == {"stored_bytes": {"int_bytes": 2, "bytes": 1},
                                "flops_effective": {"flops": 3}}
    size = {g["quant.bits"]: g["stored_bytes"]["mean"] for g in rep["table"]}
    assert size == {4: 22134, 8: 34690, 0: 2500}
    enc = {g["quant.bits"]: g["encoding"] for g in rep["table"]}
    assert enc == {4: "int codes (int_bytes)", 8: "int codes (int_bytes)",
                   0: "fp32 sparse (bytes)"}
    assert "3 runs lack `stored_bytes` (older ledgers): `int_bytes` used for 2, " \
           "`bytes` used for 1" in rep["text"]
    assert "3 runs lack `flops_effective`" in rep["text"]


def test_size_and_column_named_twice_show_once(tmp_path):
    _old_store(tmp_path)
    rep = write_report(tmp_path, plots=False, sizes=["nonzeros", "nonzeros"],
                       columns=["nonzeros", "stored_bytes"])
    assert rep["metrics"].count("nonzeros") == 1 and rep["metrics"].count("stored_bytes") == 1
    head = [c.strip() for c in rep["markdown"].splitlines()[0].strip("|").split("|")]
    assert len(head) == len(set(head))
    assert rep["size_key"] == "nonzeros"
