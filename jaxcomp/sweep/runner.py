"""The sweep runner: expand a grid, skip finished runs, run the rest — settings
that differ only in array-held numbers together in one vmapped program, the
others one after another — and append one record per run to the store.

Grouping: two settings share a program when their configs are equal after the
*vector keys* are removed: ``seed``, ``train.learning_rate`` and each
family's ``VECTOR_KEYS`` (e.g. ``prune.sparsity``); a group whose settings' plans
declare different static parts (``Plan.static``) is split into one group per static
part. A group is vectorized when its model trains with
the scanned epoch (MLPs without model state), no family needs per-batch
Python callbacks (``extra_batch``), all settings build states of the same
structure, and the swept numbers really are in the states (a family that
bakes a swept number into Python code makes settings with different values
give identical states: the group then falls back to one run at a time). The
record's ``path`` says which way each run went and ``path_reason`` why.

Example:
    >>> import tempfile
    >>> from jaxcomp.experiment import base_config
    >>> from jaxcomp.sweep.grid import product
    >>> cfg = base_config()
    >>> cfg.data.name = "digits"; cfg.model.name = "mlp"; cfg.train.epochs = 1
    >>> r = SweepRunner(cfg, product({"seed": [0, 1]}), tempfile.mkdtemp(), progress=False)
    >>> summary = r.run()
    >>> summary["ran"], summary["vectorized"], r.compiles
    (2, 2, 1)
"""

from __future__ import annotations

import dataclasses
import datetime
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
from jax.sharding import Mesh

from jaxcomp.core.errors import ConfigError
from jaxcomp.distributed.sharding import check_divisible
from jaxcomp.distributed.supervise import is_peer_failure
from jaxcomp.experiment.run import (
    load_data,
    run_experiment,
    validate,
)
from jaxcomp.sweep.grid import Spec, config_hash, expand
from jaxcomp.sweep.group_checkpoint import (
    remove_finished,
)
from jaxcomp.sweep.group_training import GroupTraining, SplitGroup
from jaxcomp.sweep.grouping import (  # noqa: F401  (group_key: public here)
    SCAN_MODELS,
    fingerprint,
    get_dotted,
    group_key,
    mesh_free,
    one_step_fingerprint,
    tree_signature,
    vector_keys,
)
from jaxcomp.sweep.progress import SweepProgress
from jaxcomp.sweep.store import ResultStore
from jaxcomp.sweep.vectorized import VectorizedProgram


@dataclasses.dataclass
class Run:
    """One setting of the sweep."""

    index: int
    setting: dict[str, Any]
    config: ml_collections.ConfigDict
    key: str


class SweepRunner(GroupTraining):
    """Run every setting of ``spec`` over ``base`` into the store at ``out_dir``.

    Args:
      base: the locked base config (after ``--set`` overrides).
      spec: the sweep spec, or ``None`` for one run.
      out_dir: the sweep directory (``results.jsonl``, ``manifest.json``).
      chunk_size: at most this many settings per vmapped program call; a group
        is split into equal chunks (the last padded by repeating a setting) so
        the program compiles once.
      vectorize: ``"auto"`` (vectorize where possible), or ``False``.
      progress: show progress on stderr in setting-epochs, with ETA (see
        :mod:`jaxcomp.sweep.progress`).
      tensorboard: write TensorBoard event files under ``out_dir/tb/<key>``.
      place: called on each stacked state before training (a device-placement hook).
      config_path: recorded in the manifest.
      mesh: a device mesh (:func:`jaxcomp.distributed.make_mesh`) over all processes:
        vectorized groups split their settings over its ``sweep`` axis (chunks
        padded to a multiple of its size) and every batch over ``data``;
        one-by-one runs are data-parallel over the whole mesh. With several
        processes every process runs the same program and only process 0 writes
        the store; which runs are pending is process 0's decision.
      checkpoint_groups: save each vectorized chunk at epoch ends under
        ``out_dir/groups`` and resume it after a kill (see
        :mod:`jaxcomp.sweep.group_checkpoint`); not with several processes.

    A run's key and the sweep's hash leave out the config's ``mesh`` block: the
    results do not depend on it, so a sweep started on one mesh resumes on another.
    """

    def __init__(self, base: ml_collections.ConfigDict, spec: Spec | None, out_dir: str, *,
                 chunk_size: int = 32, vectorize: bool | str = "auto", progress: bool = True,
                 tensorboard: bool = False, place: Callable[[Any], Any] | None = None,
                 config_path: str = "", log: Callable[[str], None] | None = None,
                 mesh: Mesh | None = None, checkpoint_groups: bool = True):
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise ConfigError(f"sweep chunk_size: got {chunk_size!r}; allowed range [1, inf)")
        if vectorize not in ("auto", True, False):
            raise ConfigError(f"sweep vectorize: got {vectorize!r}; allowed 'auto', True, False")
        pairs = expand(base, spec)
        for _, cfg in pairs:  # every setting's values (every family, on or off) are checked
            validate(cfg)      # before anything runs
            if mesh is not None:
                check_divisible("train.batch_size", cfg.train.batch_size, mesh, "data")
        self.base, self.spec = base, spec
        self.runs = [Run(i, s, c, config_hash(mesh_free(c))) for i, (s, c) in enumerate(pairs)]
        self.chunk_size, self.vectorize, self.progress = chunk_size, vectorize, progress
        self.place, self.tensorboard = place, tensorboard
        self.checkpoint_groups = bool(checkpoint_groups)
        self.mesh = mesh
        self.multiple_of = 1 if mesh is None else int(mesh.shape["sweep"])
        self.writer = jax.process_index() == 0
        say = log or (lambda msg: print(msg, file=sys.stderr))
        self.log = say if self.writer else (lambda msg: None)
        self.sweep_hash = config_hash({"base": mesh_free(base),
                                       "settings": [r.setting for r in self.runs]})
        if tensorboard:
            from jaxcomp.sweep.tblog import require_tensorboard

            require_tensorboard()
        self.store = ResultStore(out_dir, read_only=not self.writer)
        refusal = ""
        if self.writer:
            try:
                self.store.claim(self.sweep_hash, {
                    "config_path": config_path, "spec": spec.to_json() if spec else None,
                    "swept_keys": spec.keys() if spec else [], "num_runs": len(self.runs),
                    "base_config": base.to_dict()})
            except ConfigError as e:
                refusal = str(e)
        if jax.process_count() > 1:  # every process stops, not only process 0
            from jaxcomp.distributed.agree import check_same, from_writer

            check_same("sweep (config, grid or mesh)", {
                "sweep": self.sweep_hash, "chunk_size": chunk_size, "vectorize": vectorize,
                "mesh": None if mesh is None else dict(mesh.shape)})
            refusal = from_writer(refusal)
        if refusal:
            raise ConfigError(refusal)
        self.compiles = 0
        self.eval_compiles = 0
        self._datasets: dict[str, Any] = {}
        self._meta: dict[str, Any] | None = None
        self._bar: SweepProgress | None = None
        self._buffer: list[dict[str, Any]] | None = None
        self._train_ids: list[int] | None = None

    # -- helpers ----------------------------------------------------------------------------

    def _dataset(self, cfg: ml_collections.ConfigDict):
        k = config_hash({"data": cfg.data.to_dict(),
                         "seed": cfg.seed if cfg.data.val_fraction else None})
        if k not in self._datasets:
            self._datasets[k] = load_data(cfg)
        return self._datasets[k]

    def _common(self) -> dict[str, Any]:
        if self._meta is None:
            from jaxcomp import __version__
            from jaxcomp.experiment.paper_table import git_commit

            self._meta = {"version": __version__, "commit": git_commit(),
                          "mesh": None if self.mesh is None else dict(self.mesh.shape),
                          "processes": jax.process_count()}
        return self._meta

    def _record(self, run: Run, result: dict[str, Any], path: str, reason: str,
                group: str, **extra: Any) -> dict[str, Any]:
        m = result["metrics"]
        status = "diverged" if m.get("diverged") else "ok"
        swept = self.spec.keys() if self.spec else []
        rec = {"key": run.key, "index": run.index, "status": status,
               "setting": {k: get_dotted(result["config"], k) for k in swept},
               "seed": run.config.seed, "metrics": m, "ledger": result["ledger"],
               "timings": {"train_seconds": m.get("train_seconds"),
                           "total_seconds": m.get("total_seconds"), **extra.pop("timings", {})},
               "path": path, "path_reason": reason, "group": group, **extra,
               "config": result["config"], **self._common(),
               "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
        if self._buffer is not None:  # a chunk's records land together (see _flush)
            self._buffer.append(rec)
        else:
            self._flush([rec])
        return rec

    def _flush(self, recs: list[dict[str, Any]]) -> None:
        """Append records in one write (a kill leaves none or all of a chunk's records,
        unless it tears the write itself: then the rest are simply run again)."""
        self.store.append_many(recs)
        if self.tensorboard and self.writer:
            from jaxcomp.sweep.tblog import write_run

            for rec in recs:
                write_run(self.store.dir / "tb" / rec["key"], rec)

    # -- the two paths ----------------------------------------------------------------------

    def _sequential(self, run: Run, reason: str, group: str) -> dict[str, Any]:
        try:
            result = run_experiment(run.config, dataset=self._dataset(run.config),
                                    out_dir=str(self.store.dir / "runs" / run.key),
                                    mesh=self.mesh)
        except ConfigError:
            raise
        except Exception as e:  # recorded, retried on the next run of the sweep
            if is_peer_failure(e):  # another process died: the whole sweep stops
                raise
            rec = {"key": run.key, "index": run.index, "status": "error",
                   "error": f"{type(e).__name__}: {e}"[:2000], "config": run.config.to_dict(),
                   "path": "sequential", **self._common()}
            self.store.append(rec)
            self.log(f"sweep: run {run.index} ({run.key}) failed: {rec['error'][:200]}")
            return rec
        return self._record(run, result, "sequential", reason, group)

    # -- driver -----------------------------------------------------------------------------

    def pending(self) -> list[Run]:
        """The runs not finished in the store yet (process 0's store decides)."""
        done = self.finished_keys()
        return [r for r in self.runs if r.key not in done]

    def finished_keys(self) -> set[str]:
        """The finished runs' keys, as process 0's store has them (on every process)."""
        done = self.store.finished_keys() if self.writer else set()
        if jax.process_count() > 1:
            from jaxcomp.distributed.agree import from_writer

            done = set(from_writer(sorted(done)))
        return done

    def run(self) -> dict[str, Any]:
        """Run every pending setting; returns a summary (counts, compiles, seconds)."""
        t0 = time.perf_counter()
        todo = self.pending()
        skipped = len(self.runs) - len(todo)
        if skipped:
            self.log(f"sweep: {skipped} of {len(self.runs)} runs already finished; skipping them")
        vk = vector_keys()
        groups: dict[str, list[Run]] = {}
        for r in todo:
            groups.setdefault(group_key(r.config, vk), []).append(r)
        if self.checkpoint_groups and jax.process_count() > 1:
            self.log("sweep: note: with several processes vectorized groups are not "
                     "checkpointed at epoch ends (a killed group trains again from epoch 0)")
        self._bar = SweepProgress(sum(r.config.train.epochs for r in todo), len(todo)) \
            if self.progress and todo and self.writer else None
        counts = {"vectorized": 0, "sequential": 0, "diverged": 0, "error": 0}
        prog_cache: dict[str, VectorizedProgram] = {}
        queue = list(groups.items())
        prebuilt: dict[str, tuple[list, list]] = {}  # a split group's parts, set up once
        try:
            while queue:
                gk, runs = queue.pop(0)
                built = prebuilt.pop(gk, None)
                cfg = runs[0].config
                reason = ""
                if self.vectorize is False:
                    reason = "vectorization turned off"
                elif len(runs) < 2:
                    reason = "a group of one setting"
                elif cfg.train.scan in ("off", False):
                    reason = f"train.scan is {cfg.train.scan!r}"
                elif cfg.model.name not in SCAN_MODELS:
                    reason = (f"model {cfg.model.name!r} trains with the per-step loop "
                              f"(vectorized: {', '.join(SCAN_MODELS)})")
                elif cfg.train.epochs == 0:
                    reason = "train.epochs is 0"
                recs = None
                if not reason:
                    self._train_ids = None
                    try:
                        ctxs, states, reason = self._contexts(runs, built)
                    except SplitGroup as split:  # each part is a group of its own
                        subs = [(f"{gk}.{i}", part[0]) for i, part in enumerate(split.parts)]
                        prebuilt.update((k, part[1:]) for (k, _), part in
                                        zip(subs, split.parts, strict=True))
                        self.log(f"sweep: group {gk}: its settings' plans have "
                                 f"{len(subs)} different static parts; split into groups "
                                 + ", ".join(f"{k} ({len(p)} run(s))" for k, p in subs))
                        queue[:0] = subs
                        continue
                    if not reason:
                        mark = self._bar.done if self._bar is not None else 0
                        try:
                            recs = self._vectorized(runs, ctxs, states, gk, prog_cache)
                        except ConfigError:
                            raise
                        except Exception as e:  # e.g. out of memory: go one by one
                            if is_peer_failure(e):
                                raise
                            reason = f"the vectorized program failed: {type(e).__name__}: " \
                                     f"{str(e)[:300]}"
                            done = self.finished_keys()
                            recs = [r for r in self.store.latest() if r["key"] in done and
                                    r["key"] in {x.key for x in runs}]
                            runs = [r for r in runs if r.key not in done]
                            if self._bar is not None:  # count only what was written
                                self._bar.rewind(mark + len(recs) * cfg.train.epochs)
                if recs is None or reason:
                    self.log(f"sweep: group {gk}: {len(runs)} run(s) one by one ({reason})")
                    recs = list(recs or [])
                    for r in runs:
                        recs.append(self._sequential(r, reason, gk))
                        if self._bar is not None:
                            self._bar.runs(1, epochs=r.config.train.epochs,
                                           label=f"run {r.index} ({r.key}) done")
                for rec in recs:
                    if rec["status"] == "error":
                        counts["error"] += 1
                        continue
                    counts[rec["path"]] += 1
                    counts["diverged"] += rec["status"] == "diverged"
        finally:
            if self._bar is not None:
                self._bar.close()
            self._buffer = None
        if self.writer:
            remove_finished(self.store.dir, self.store.finished_keys())
        self.eval_compiles = sum(p.eval_compiles for p in prog_cache.values())
        return {"runs": len(self.runs), "skipped": skipped, "ran": len(todo), **counts,
                "compiles": self.compiles, "seconds": time.perf_counter() - t0,
                "out": str(self.store.dir)}


def run_sweep(base: ml_collections.ConfigDict, spec: Spec | None, out_dir: str,
              **kwargs: Any) -> dict[str, Any]:
    """Convenience wrapper: ``SweepRunner(base, spec, out_dir, **kwargs).run()``."""
    return SweepRunner(base, spec, out_dir, **kwargs).run()
