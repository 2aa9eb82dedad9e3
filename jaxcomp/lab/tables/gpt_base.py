"""The transformer tables' base GPT: trained once per (config, seed) and cached.

:func:`trained_gpt` builds the byte GPT of ``configs/gpt_base.py`` (or a given
config), trains it with :func:`jaxcomp.models.lm.train_lm` on the fortunes corpus
(:func:`jaxcomp.data.text.fortunes`) and saves the params with orbax under a cache
directory keyed by a hash of (model config, training config, seed, corpus sha256), so
T9, T10 and T11 (and a re-run) share one training. The cache is
``$JAXCOMP_CACHE/gpt`` if set, else ``runs/gpt_cache`` in the checkout (or
``~/.cache/jaxcomp/gpt`` for an installed package). What those tables share beyond the
model: :func:`calib_tokens` (their calibration windows), :meth:`BaseGPT.bpb` (their
metric), :func:`base_ours`, :func:`base_deviation` and :func:`gpt_table_result` (their
result and analysis).

Example:
    >>> import tempfile, os
    >>> from jaxcomp.data.text import TextData
    >>> cfg = {"model": {"num_layers": 1, "width": 32, "num_heads": 2, "context": 16},
    ...        "train": {"steps": 4, "batch_size": 4, "learning_rate": 1e-3}}
    >>> data = TextData.from_bytes(b"the quick brown fox. " * 50, name="toy")
    >>> d = tempfile.mkdtemp()
    >>> base = trained_gpt(cfg, seed=0, data=data, cache_dir=d)
    >>> base.cached, base.steps, base.tokens, base.valid_bpb < 8.0
    (False, 4, 256, True)
    >>> trained_gpt(cfg, seed=0, data=data, cache_dir=d).cached
    True
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import numpy as np
import optax

from jaxcomp.core import paths as _paths
from jaxcomp.core.errors import ConfigError
from jaxcomp.data.text import TextData, bigram_bpb, unigram_bpb
from jaxcomp.experiment.paper_table import Claim, TableResult
from jaxcomp.flax.model import Model
from jaxcomp.models import get_model
from jaxcomp.models.lm import bits_per_byte, train_lm

VERSION = 1  # bump when the training recipe below changes meaning
TRAIN_DEFAULTS = {"steps": 500, "batch_size": 16, "learning_rate": 2e-3, "warmup": 50,
                  "weight_decay": 0.1, "clip": 1.0, "eval_every": None,
                  "max_eval_windows": 256}


class BaseGPT(NamedTuple):
    """A trained GPT and what the tables report beside it."""

    model: Model
    params: Any
    model_state: Any
    data: TextData
    context: int
    valid_bpb: float        # on ``eval_windows`` valid windows (all if 0)
    unigram_bpb: float
    bigram_bpb: float
    steps: int
    tokens: int             # training tokens seen (steps * batch * context)
    history: list[dict]
    train_seconds: float    # of the run that trained it (not of a cache read)
    cached: bool
    key: str
    eval_windows: int | None  # valid windows for the tables' bpb (None: the whole split)

    def bpb(self, params: Any, model: Model | None = None) -> float:
        """Valid bits per byte of ``params`` run by ``model`` (default: the base model,
        e.g. a tapped variant of it) with the base model's state, on its eval windows."""
        return bits_per_byte(model or self.model, params, self.model_state, self.data,
                             context=self.context, batch_size=32, max_windows=self.eval_windows)

    def facts(self) -> dict[str, Any]:
        """The base model's numbers a table keeps per seed (see :func:`base_ours`)."""
        return {"valid_bpb": self.valid_bpb, "unigram_bpb": self.unigram_bpb,
                "bigram_bpb": self.bigram_bpb, "steps": self.steps, "tokens": self.tokens,
                "train_seconds": self.train_seconds, "cached": self.cached}


def base_ours(facts: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The base GPT's entries of a table's ``ours`` from the seeds' :meth:`BaseGPT.facts`:
    valid bpb (mean over seeds), the baselines and the training length (first seed)."""
    return {"base_valid_bpb": float(np.mean([f["valid_bpb"] for f in facts])),
            "unigram_bpb": facts[0]["unigram_bpb"], "bigram_bpb": facts[0]["bigram_bpb"],
            "base_train_steps": facts[0]["steps"], "base_train_tokens": facts[0]["tokens"]}


def base_note(ours: Mapping[str, Any]) -> str:
    """How far the tables' base GPT got, beside the unigram and bigram baselines.

    Example:
        >>> base_note({"base_valid_bpb": 3.2, "base_train_steps": 10,
        ...            "base_train_tokens": 2560, "unigram_bpb": 4.87, "bigram_bpb": 3.78})
        'Base GPT: 3.200 bpb after 10 steps (2,560 tokens) vs unigram 4.870 and bigram 3.780.'
    """
    return (f"Base GPT: {ours['base_valid_bpb']:.3f} bpb after {ours['base_train_steps']} "
            f"steps ({ours['base_train_tokens']:,} tokens) vs unigram "
            f"{ours['unigram_bpb']:.3f} and bigram {ours['bigram_bpb']:.3f}.")


def calib_tokens(data: TextData, context: int, n: int, batch: int, seed: int
                 ) -> list[np.ndarray]:
    """``n`` random training windows (seeded), in batches of ``batch``.

    Example:
        >>> data = TextData.from_bytes(bytes(range(256)) * 4, name="toy")
        >>> [b.shape for b in calib_tokens(data, 8, 5, 2, seed=0)]
        [(2, 8), (2, 8), (1, 8)]
    """
    rng = np.random.default_rng([seed, 9])
    starts = rng.integers(0, len(data.train) - context, size=n)
    win = data.train[starts[:, None] + np.arange(context)].astype(np.int32)
    return [win[i:i + batch] for i in range(0, n, batch)]


def gpt_table_result(table: str, title: str, paper: dict, ours: dict, claims: list[Claim],
                     deviations: list[str], quick: bool, rows: list[dict], *,
                     quick_also: str = "",
                     explain: Mapping[str, Callable[[Claim, dict], str]] | None = None,
                     ) -> TableResult:
    """A base-GPT table's result. In quick mode a first deviation says so (the quick
    settings, ``quick_also`` appended to them). The analysis is :func:`base_note`, then
    each failing claim: ``explain[claim.id](claim, ours)`` where given, else its value
    against its threshold.

    Example:
        >>> ours = {"base_valid_bpb": 3.2, "base_train_steps": 10, "base_train_tokens": 2560,
        ...         "unigram_bpb": 4.87, "bigram_bpb": 3.78}
        >>> r = gpt_table_result("T0", "toy", {}, ours, [Claim("a", "x", 0.5, 0.0, "<")],
        ...                      ["A toy."], True, [])
        >>> r.analysis.split(". ")[-1], len(r.deviations)
        ('a FAIL (+0.5000 vs < 0).', 2)
    """
    if quick:
        deviations = [f"QUICK MODE: one seed, a tiny GPT trained 150 steps, 16 calibration "
                      f"windows{quick_also}; claims are not meaningful.", *deviations]
    notes = [base_note(ours)]
    for c in claims:
        if c.passed:
            continue
        why = (explain or {}).get(c.id)
        notes.append(why(c, ours) if why else
                     f"{c.id} FAIL ({c.value:+.4f} vs {c.op} {c.threshold:g}).")
    return TableResult(table, title, paper, ours, claims, deviations, " ".join(notes), quick,
                       rows)


def base_deviation(paper_models: str, paper_metric: str) -> str:
    """The deviation every base-GPT table starts with: our model and metric vs the paper's.

    Example:
        >>> base_deviation("LLaMA-7B", "WikiText perplexity").split(" instead of ", 1)[1]
        'LLaMA-7B; valid bits per byte instead of WikiText perplexity.'
    """
    return ("A 4-layer, width-256 byte GPT trained from scratch on the fortunes corpus (CPU "
            f"budget) instead of {paper_models}; valid bits per byte instead of {paper_metric}.")


def _plain(cfg: Any) -> dict:
    if hasattr(cfg, "to_dict"):
        cfg = cfg.to_dict()
    return {k: _plain(v) if isinstance(v, Mapping) or hasattr(v, "to_dict") else v
            for k, v in dict(cfg).items()}


def resolve_config(cfg: Any = None, quick: bool = False) -> dict:
    """``{"model", "train", "eval_windows"}`` from ``cfg`` (default: ``configs/gpt_base``),
    its ``quick`` block laid over the top in quick mode, training defaults filled in."""
    if cfg is None:
        from jaxcomp.lab.tables.configs.gpt_base import get_config

        cfg = get_config()
    c = _plain(cfg)
    if quick and "quick" in c:
        c.update(c["quick"])
    if "model" not in c:
        raise ConfigError(f"gpt_base: the config needs a 'model' block; got keys {sorted(c)}")
    train = {**TRAIN_DEFAULTS, **c.get("train", {})}
    unknown = sorted(set(train) - set(TRAIN_DEFAULTS))
    if unknown:
        raise ConfigError(f"gpt_base.train: unknown keys {unknown}; allowed "
                          f"{sorted(TRAIN_DEFAULTS)}")
    return {"model": dict(c["model"]), "train": train,
            "eval_windows": int(c.get("eval_windows", 0) or 0)}


def cache_root() -> pathlib.Path:
    """``$JAXCOMP_CACHE/gpt``, else ``runs/gpt_cache`` in the checkout, else
    ``~/.cache/jaxcomp/gpt``."""
    if os.environ.get("JAXCOMP_CACHE"):
        return pathlib.Path(os.environ["JAXCOMP_CACHE"]) / "gpt"
    from jaxcomp.experiment.paper_table import checkout_root

    root = checkout_root()
    return root / "runs" / "gpt_cache" if root else pathlib.Path.home() / ".cache/jaxcomp/gpt"


def cache_key(model_cfg: Mapping, train_cfg: Mapping, seed: int, corpus_sha: str) -> str:
    """A short hash of everything that decides the trained params."""
    blob = json.dumps({"model": dict(model_cfg), "train": dict(train_cfg), "seed": int(seed),
                       "corpus": corpus_sha, "version": VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def make_tx(train: Mapping, steps: int) -> optax.GradientTransformation:
    """AdamW with linear warm-up and cosine decay to 10%, decay on kernels, clipping."""
    warm = max(0, min(int(train["warmup"]), steps - 1))
    sched = optax.warmup_cosine_decay_schedule(0.0, train["learning_rate"], warm,
                                               max(steps, warm + 1),
                                               end_value=0.1 * train["learning_rate"])
    mask = lambda p: jax.tree.map(lambda a: a.ndim >= 2, p)
    return optax.chain(optax.clip_by_global_norm(train["clip"]),
                       optax.adamw(sched, weight_decay=train["weight_decay"], mask=mask))


def _save(path: pathlib.Path, params: Any, meta: dict) -> None:
    import orbax.checkpoint as ocp

    flat = {p.replace("/", "."): np.asarray(v) for p, v in _paths.path_dict(params).items()}
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    ckpt = ocp.StandardCheckpointer()
    ckpt.save((tmp / "params").absolute(), flat)
    ckpt.wait_until_finished()
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=float))
    if path.exists():
        import shutil

        shutil.rmtree(path)
    tmp.rename(path)


def _load(path: pathlib.Path, template: Any) -> tuple[Any, dict]:
    import orbax.checkpoint as ocp

    flat = {p.replace("/", "."): np.asarray(v) for p, v in _paths.path_dict(template).items()}
    got = ocp.StandardCheckpointer().restore((path / "params").absolute(), flat)
    params = _paths.replace(template, {p.replace(".", "/"): jax.numpy.asarray(v)
                                       for p, v in got.items()})
    return params, json.loads((path / "meta.json").read_text())


def trained_gpt(cfg: Any = None, seed: int = 0, quick: bool = False, *,
                data: TextData | None = None, cache_dir: str | os.PathLike | None = None,
                log: Any = None) -> BaseGPT:
    """The tables' base GPT for ``seed``: from the cache, or trained and cached.

    Args:
      cfg: ``{"model": get_model("gpt") keywords (context included), "train": {steps,
        batch_size, learning_rate, warmup, weight_decay, clip, eval_every,
        max_eval_windows}, "eval_windows", "quick": {...}}`` (default
        ``configs/gpt_base.py``).
      seed: the init and data-order seed.
      quick: use the config's ``quick`` block.
      data: the corpus (default :func:`jaxcomp.data.text.fortunes`).
      cache_dir: where params are cached (default :func:`cache_root`).
      log: a ``log(str)`` for progress, or None.

    Returns:
      a :class:`BaseGPT`.
    """
    c = resolve_config(cfg, quick)
    model_cfg, train = c["model"], c["train"]
    if "context" not in model_cfg:
        raise ConfigError("gpt_base.model.context: missing; the window length is needed")
    context = int(model_cfg["context"])
    if data is None:
        from jaxcomp.data.text import fortunes

        data = fortunes()
    model = get_model("gpt", input_shape=(context,), **model_cfg)
    key = cache_key(model_cfg, train, seed, data.sha256 or data.name)
    path = pathlib.Path(cache_dir) if cache_dir else cache_root()
    path = path / key
    template, ms = model.init(jax.random.key(seed), None)
    ev = c["eval_windows"] or None
    uni = unigram_bpb(data.train, data.valid)
    bi = bigram_bpb(data.train, data.valid)
    steps, bs = int(train["steps"]), int(train["batch_size"])
    if (path / "meta.json").is_file():
        params, meta = _load(path, template)
        if log:
            log(f"base GPT seed {seed}: cached {path}")
        return BaseGPT(model, params, ms, data, context, meta["valid_bpb"], uni, bi,
                       meta["steps"], meta["tokens"], meta["history"], meta["train_seconds"],
                       True, key, ev)
    t0 = time.perf_counter()
    state, hist = train_lm(model, data, make_tx(train, steps), steps=steps, batch_size=bs,
                           context=context, seed=seed, eval_every=train["eval_every"],
                           max_eval_windows=train["max_eval_windows"])
    secs = time.perf_counter() - t0
    if log:
        log(f"base GPT seed {seed}: {steps} steps in {secs:.0f} s, "
            f"valid bpb {hist[-1]['valid_bpb']:.3f} (first windows)")
    params = state.params
    vb = bits_per_byte(model, params, state.model_state, data, context=context,
                       batch_size=32, max_windows=ev)
    meta = {"valid_bpb": vb, "steps": steps, "tokens": steps * bs * context,
            "history": hist, "train_seconds": secs, "model": model_cfg, "train": train,
            "seed": seed, "corpus": data.sha256, "eval_windows": ev}
    _save(path, params, meta)
    params, _ = _load(path, template)   # the cached copy is what later runs will see
    return BaseGPT(model, params, state.model_state, data, context, vb, uni, bi, steps,
                   steps * bs * context, hist, secs, False, key, ev)


__all__ = ["BaseGPT", "base_deviation", "base_note", "base_ours", "cache_key", "cache_root",
           "calib_tokens", "gpt_table_result", "make_tx", "resolve_config", "trained_gpt"]
