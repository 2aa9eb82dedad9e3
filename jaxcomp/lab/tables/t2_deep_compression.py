"""T2 — Deep Compression (Han et al. 2016): prune + k-means weight sharing + Huffman.

Settings come from ``tables/configs/t2_deep_compression.py`` (its docstring gives the
command and the expected numbers). Sizes are ``len()`` of the bytes that
:func:`jaxcomp.quant.deep_compression.compress` writes, and the decoded model
is evaluated too, so the stored bytes really hold the accuracy we report.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcomp.experiment.paper_table import Claim, TableResult
from jaxcomp.lab.tables.lenet import LeNet300Kit
from jaxcomp.prune import magnitude, prune_once
from jaxcomp.quant import deep_compression as dc
from jaxcomp.quant.sharing import weight_sharing
from jaxcomp.train import eval_step_fn, evaluate, fit, init_state

TABLE = "T2"
TITLE = "Deep Compression: pruning + k-means weight sharing + Huffman (LeNet-300-100)"
CONFIG = "t2_deep_compression"


_KIT = LeNet300Kit(TABLE, CONFIG)
load_config, _log = _KIT.load_config, _KIT.log


_EVAL: dict = {}


def _acc(model, params, ms, ds, transform=None, comp_state=()) -> float:
    # One compiled eval step per transform object (compiles dominate the run time).
    key = id(transform)
    if key not in _EVAL:
        _EVAL[key] = (transform, jax.jit(eval_step_fn(model, transform)))
    return evaluate(model, params, ms, ds.x_test, ds.y_test, transform=transform,
                    comp_state=comp_state, step_fn=_EVAL[key][1])["accuracy"]


_PRED: dict = {}


def _correct(model, params, ms, ds, transform, comp_state) -> np.ndarray:
    """Per-test-example correctness (bool) of the shared model: for paired noise figures."""
    key = id(transform)
    if key not in _PRED:
        _PRED[key] = (transform, jax.jit(lambda p, c, s, x: jnp.argmax(
            model.apply(transform.apply(p, c), s, x, train=False)[0], -1)))
    fn = _PRED[key][1]
    pred = np.concatenate([np.asarray(fn(params, comp_state, ms, ds.x_test[i:i + 1000]))
                           for i in range(0, len(ds.x_test), 1000)])
    return pred == np.asarray(ds.y_test)


def prune_iteratively(model, ds, params, ms, cfg):
    """Han's iterative pruning: rounds of magnitude pruning, retraining at lr / 10."""
    keep = dict(cfg.keep)
    tx = optax.adam(cfg.learning_rate / 10)
    for r in range(1, cfg.prune_rounds + 1):
        frac = r / cfg.prune_rounds
        sparsity = {p: 1.0 - k ** frac for p, k in keep.items()}  # geometric decay of kept
        t = magnitude(sparsity)
        params, pstate = prune_once(t, params)
        state = init_state(model, ds, tx, seed=cfg.seed + r, transform=t,
                           params=jax.tree.map(jnp.copy, params),
                           model_state=ms)._replace(comp_state=pstate)
        if cfg.retrain_epochs:
            res = fit(model, ds, tx, epochs=cfg.retrain_epochs, batch_size=cfg.batch_size,
                      seed=cfg.seed + r, transform=t, state=state, progress=False)
            state = res.state
        params = t.apply(state.params, state.comp_state)
        _log(f"prune round {r}: kept "
             + ", ".join(f"{p.split('/')[0]} {float(np.mean(np.asarray(params[p.split('/')[0]]['kernel']) != 0)):.3f}"  # noqa: E501
                         for p in keep)
             + f"; acc {_acc(model, params, ms, ds):.4f}")
    return params


_SHARED: dict = {}


def share(model, ds, params, ms, cfg, *, bits, init, key, epochs):
    """k-means weight sharing of every kernel, then centroid fine-tuning."""
    # The init only changes the state; one transform per bit width serves every
    # init, so apply/update (and the compiled eval step) are shared across inits.
    t_init = weight_sharing(bits=bits, init=init, key=key, iters=cfg.kmeans_iters,
                            optimizer=optax.adam(cfg.ft_learning_rate))
    if bits not in _SHARED:
        _SHARED[bits] = weight_sharing(bits=bits, iters=cfg.kmeans_iters,
                                       optimizer=optax.adam(cfg.ft_learning_rate))
    t = _SHARED[bits]
    # fit donates its state's buffers: give it a copy so the caller's params survive.
    state = init_state(model, ds, optax.set_to_zero(), seed=cfg.seed, transform=t,
                       params=jax.tree.map(jnp.copy, params), model_state=ms)
    state = state._replace(comp_state=t_init.init(params))
    acc0 = _acc(model, params, ms, ds, t, state.comp_state)
    if epochs:
        state = fit(model, ds, optax.set_to_zero(), epochs=epochs, batch_size=cfg.batch_size,
                    seed=cfg.seed + 100, transform=t, state=state, progress=False).state
    acc1 = _acc(model, params, ms, ds, t, state.comp_state)
    return acc0, acc1, state.comp_state, _correct(model, params, ms, ds, t, state.comp_state)


def run(quick: bool = False) -> TableResult:
    cfg = load_config(quick)
    t_start = time.perf_counter()
    ds, model = _KIT.data_and_model(cfg)
    res = fit(model, ds, optax.adam(cfg.learning_rate), epochs=cfg.dense_epochs,
              batch_size=cfg.batch_size, seed=cfg.seed, progress=False)
    dense, ms = res.state.params, res.state.model_state
    acc_dense = _acc(model, dense, ms, ds)
    _log(f"dense acc {acc_dense:.4f}")
    pruned = prune_iteratively(model, ds, dense, ms, cfg)
    acc_pruned = _acc(model, pruned, ms, ds)
    nnz = sum(int(np.count_nonzero(np.asarray(x))) for x in jax.tree.leaves(pruned))
    n_all = sum(int(np.size(x)) for x in jax.tree.leaves(pruned))

    acc_sh0, acc_sh, sstate, _ = share(model, ds, pruned, ms, cfg, bits=cfg.bits,
                                    init=cfg.share_init, key=jax.random.key(cfg.seed),
                                    epochs=cfg.ft_epochs)
    _log(f"{cfg.bits}-bit sharing: acc {acc_sh0:.4f} before, {acc_sh:.4f} after fine-tuning")
    dense_bytes = dc.dense_fp32_bytes(pruned)
    fixed = dc.compress(pruned, sstate, rel_bits=cfg.rel_bits, use_huffman=False)
    huff = dc.compress(pruned, sstate, rel_bits=cfg.rel_bits, use_huffman=True)
    decoded = dc.decompress(huff, pruned)
    acc_decoded = _acc(model, decoded, ms, ds)
    ratio_fixed, ratio_huff = dense_bytes / fixed.nbytes, dense_bytes / huff.nbytes
    _log(f"bytes: dense {dense_bytes}, fixed {fixed.nbytes} ({ratio_fixed:.1f}x), "
         f"huffman {huff.nbytes} ({ratio_huff:.1f}x); decoded acc {acc_decoded:.4f}")

    rows = [{"stage": "dense fp32", "bits": 32, "init": "-", "acc_before_ft": acc_dense,
             "acc": acc_dense, "bytes": dense_bytes}]
    rows.append({"stage": "pruned fp32", "bits": 32, "init": "-", "acc_before_ft": acc_pruned,
                 "acc": acc_pruned, "bytes": float("nan")})
    rows.append({"stage": "pruned + shared (fixed width)", "bits": cfg.bits,
                 "init": cfg.share_init, "acc_before_ft": acc_sh0, "acc": acc_sh,
                 "bytes": fixed.nbytes})
    rows.append({"stage": "pruned + shared + Huffman (decoded)", "bits": cfg.bits,
                 "init": cfg.share_init, "acc_before_ft": acc_sh0, "acc": acc_decoded,
                 "bytes": huff.nbytes})

    init_cmp: dict[str, float] = {}
    claims_init = []
    for b in cfg.init_bits:
        lin0, lin1, _, lin_ok = share(model, ds, pruned, ms, cfg, bits=b, init="linear",
                                      key=None, epochs=cfg.init_ft_epochs)
        den0, den1, _, _ = share(model, ds, pruned, ms, cfg, bits=b, init="density", key=None,
                                 epochs=cfg.init_ft_epochs)
        rnd = [share(model, ds, pruned, ms, cfg, bits=b, init="random",
                     key=jax.random.key(1000 + i), epochs=cfg.init_ft_epochs)
               for i in range(cfg.init_random_keys)]
        rnd0 = float(np.mean([r[0] for r in rnd]))
        rnd1 = float(np.mean([r[1] for r in rnd]))
        init_cmp.update(_init_noise(b, [r[1] for r in rnd], lin_ok, [r[3] for r in rnd]))
        _log(f"{b}-bit init: linear {lin0:.4f}->{lin1:.4f}, density {den0:.4f}->{den1:.4f}, "
             f"random {rnd0:.4f}->{rnd1:.4f} (mean of {len(rnd)})")
        for name, a0, a1 in (("linear", lin0, lin1), ("density", den0, den1),
                             (f"random (mean of {len(rnd)} keys)", rnd0, rnd1)):
            rows.append({"stage": "init comparison", "bits": b, "init": name,
                         "acc_before_ft": a0, "acc": a1, "bytes": float("nan")})
        init_cmp[f"linear_minus_random_{b}bit_pt"] = 100 * (lin1 - rnd1)
        init_cmp[f"linear_minus_random_{b}bit_before_ft_pt"] = 100 * (lin0 - rnd0)
        claims_init.append(Claim(f"c{b}", f"{b}-bit: linear-init acc - random-init acc "
                                 "(after centroid fine-tuning, pt)", 100 * (lin1 - rnd1), 0.0,
                                 ">="))

    claims = [
        Claim("a1", f"storage vs fp32 dense, prune + {cfg.bits}-bit sharing (x; paper 32x)",
              ratio_fixed, 32.0, ">="),
        Claim("a2", "storage vs fp32 dense, + Huffman (x; paper 40x)", ratio_huff, 40.0, ">="),
        Claim("b", "decoded compressed acc - pruned float acc (pt)",
              100 * (acc_decoded - acc_pruned), -0.3, ">="),
        *claims_init,
    ]
    ours = {"dense_acc": acc_dense, "pruned_acc": acc_pruned, "shared_acc": acc_sh,
            "decoded_acc": acc_decoded, "weights_kept": nnz / n_all,
            "ratio_prune_quant_x": ratio_fixed, "ratio_huffman_x": ratio_huff,
            "dense_bytes": dense_bytes, "bytes_fixed": fixed.nbytes,
            "bytes_huffman": huff.nbytes, "seconds": time.perf_counter() - t_start,
            **init_cmp}
    for p, r in huff.report().items():
        if "values" in r:
            ours[f"huffman_bytes[{p}]"] = (f"values {r['values']}, rel-idx {r['gaps']}, "
                                           f"codebook {r['codebook']}, header {r['header']}")
    paper = {"ratio_prune_quant_x": 32.0, "ratio_huffman_x": 40.0,
             "dense_error_mnist_pct": 1.64, "compressed_error_mnist_pct": 1.58,
             "weights_kept": 0.08}
    deviations = [
        "Fashion-MNIST instead of MNIST; absolute accuracies are not comparable.",
        "Adam (lr 1e-3, retraining at 1e-4) instead of SGD with momentum; no L2 "
        "regularization.",
        f"Pruning in {cfg.prune_rounds} rounds with {cfg.retrain_epochs} retraining epochs "
        "each, keep ratio decaying geometrically to Han's 8%/9%/26%.",
        "Centroids fine-tuned with Adam (lr 1e-4) on the summed gradients of their weights; "
        "raw weights frozen.",
        "Biases stored as raw float32 and counted; every section (headers, codebooks, Huffman "
        "code tables) is counted from the encoded bytes.",
        "Han's sizes count 6-bit indices for all FC layers; we use 6 bits for all three "
        "kernels and 5-bit relative indices with escape entries for longer zero runs.",
        "Claim b compares the same network before/after sharing on the same test set "
        "(paired), so one seed is used.",
    ]
    analysis = _analysis(claims, claims_init, init_cmp, huff, ratio_fixed, ratio_huff, cfg)
    return TableResult(TABLE, TITLE, paper, ours, claims, deviations, analysis, quick, rows)


def _init_noise(bits: int, rnd_accs: list[float], lin_ok: np.ndarray,
                rnd_ok: list[np.ndarray]) -> dict[str, float]:
    """Noise of the linear-vs-random comparison, from the runs: the spread of the
    random-init accuracy over keys (std, and the SE of its mean), and the paired
    test-set SE of linear − random (per-example correctness, mean over keys)."""
    k = len(rnd_accs)
    std = 100 * float(np.std(rnd_accs, ddof=1)) if k > 1 else float("nan")
    paired = [100 * float(np.std(lin_ok.astype(np.float64) - r, ddof=1)
                          / np.sqrt(len(lin_ok))) for r in rnd_ok]
    return {f"random_init_std_over_keys_{bits}bit_pt": std,
            f"random_init_se_of_mean_over_keys_{bits}bit_pt": std / np.sqrt(k),
            f"paired_test_se_linear_minus_random_{bits}bit_pt": float(np.mean(paired))}


def _analysis(claims, claims_init, init_cmp, huff, ratio_fixed, ratio_huff, cfg) -> str:
    """Which claims fail, with the numbers (all computed in this run) that explain them."""
    failed = [c.id for c in claims if not c.passed]
    text = "All claims pass." if not failed else f"Failing: {', '.join(failed)}."
    if any(c.id in ("a1", "a2") and not c.passed for c in claims):
        sec = {"values": 0, "gaps": 0, "codebook": 0, "header": 0, "raw": 0}
        for r in huff.report().values():
            for k in sec:
                sec[k] += r.get(k, 0)
        text += (f" Storage: {ratio_fixed:.1f}x (fixed-width) and {ratio_huff:.1f}x "
                 f"(Huffman) against the paper's 32x and 40x. Of the {huff.nbytes} "
                 f"Huffman-coded bytes, cluster indices take {sec['values']}, 5-bit relative "
                 f"indices {sec['gaps']}, codebooks {sec['codebook']}, headers "
                 f"{sec['header']} and float32 biases {sec['raw']}. The thresholds are the "
                 "paper's own figures and are kept.")
    init_failed = [c for c in claims_init if not c.passed]
    if init_failed:
        parts = []
        for c in init_failed:
            b = c.id[1:]
            paired = init_cmp[f"paired_test_se_linear_minus_random_{b}bit_pt"]
            key_se = init_cmp[f"random_init_se_of_mean_over_keys_{b}bit_pt"]
            se = float(np.hypot(paired, key_se)) if np.isfinite(key_se) else paired
            where = "within" if abs(c.value) <= 2 * se else "beyond"
            spread = (f"; std of random init over {cfg.init_random_keys} keys "
                      f"{init_cmp[f'random_init_std_over_keys_{b}bit_pt']:.2f} pt, SE of its "
                      f"mean {key_se:.2f} pt; combined SE {se:.2f} pt"
                      if cfg.init_random_keys > 1 else "")
            parts.append(f"{b}-bit: {c.value:+.2f} pt; paired test-set SE of the difference "
                         f"{paired:.2f} pt{spread}; {where} two SEs")
        text += (f" Linear init is not better than random (Forgy) init here ({'; '.join(parts)}"
                 "). A difference within two SEs is test-set and key noise rather than a "
                 "clear reversal; one beyond them means random init is better here. With "
                 f"{cfg.kmeans_iters} Lloyd iterations the inits reach similar 1-D clusterings "
                 "of a 300-100 MLP's weights and centroid fine-tuning closes most of the "
                 "rest, so Han's argument for linear init (large weights keep their own "
                 "centroids) does not show at this scale. The threshold is kept as stated.")
    return text


if __name__ == "__main__":
    import argparse

    from jaxcomp.experiment.paper_table import write_results

    ap = argparse.ArgumentParser(description=TITLE)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    print(write_results(run(args.quick)))


__all__ = ["TABLE", "TITLE", "run"]

