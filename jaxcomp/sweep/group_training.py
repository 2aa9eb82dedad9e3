"""How the sweep runner trains a group of settings together: set up each
setting's run (its plans and initial state), decide whether the group can share
one vmapped program (and say why not), train it in chunks through the engine
with a resumable checkpoint per chunk, and finish every member's record.

:class:`GroupTraining` is a part of :class:`~jaxcomp.sweep.runner.SweepRunner`;
see that module for the grouping rules.
"""

from __future__ import annotations

import math
import time
from typing import Any

import jax
import jax.numpy as jnp

from jaxcomp.distributed.sharding import host_tree
from jaxcomp.experiment.plan import apply_plans
from jaxcomp.experiment.run import RunContext, build_model, finish_run
from jaxcomp.sweep.grid import config_hash
from jaxcomp.sweep.group_checkpoint import GroupCheckpoint, epoch_end_hook, saved_chunks
from jaxcomp.sweep.grouping import (
    fingerprint,
    get_dotted,
    one_step_fingerprint,
    plans_key,
    tree_signature,
    vector_keys,
)
from jaxcomp.sweep.vectorized import VectorizedProgram, stack, train_stacked, unstack
from jaxcomp.train.loop import FitResult
from jaxcomp.train.state import create_state


class SplitGroup(Exception):  # noqa: N818 (control flow, not an error)
    """A group's settings have plans with different static parts: ``parts`` are the
    sub-groups (in the group's order) whose plans agree, each a group of its own, as
    ``(runs, contexts, states)``: what was set up for them is not set up again."""

    def __init__(self, parts: list[tuple[list[Any], list[RunContext], list[Any]]]):
        super().__init__(f"{len(parts)} sub-groups")
        self.parts = parts


class GroupTraining:
    """The vectorized-group half of the sweep runner (a mixin: it reads the runner's
    store, dataset cache, mesh, chunking options and progress bar)."""

    def _setup(self, runs: list[Any]) -> tuple[list[RunContext], list[Any], str]:
        """Every run's context (plans installed) and initial state, or a reason to stop."""
        ctxs, states = [], []
        init_fns: dict[str, Any] = {}  # one compile per static part (its plans' model)
        for run in runs:
            cfg = run.config
            ds = self._dataset(cfg)
            ctx = RunContext(cfg, ds, build_model(cfg, ds), progress=False)
            apply_plans(cfg, ctx)
            if ctx.extra_batch is not None:
                return ctxs, states, "a family feeds per-batch data from Python (extra_batch)"
            tx = ctx.make_optimizer()
            part = plans_key(ctx)
            if part not in init_fns:  # instead of eager op-by-op init
                init_fns[part] = jax.jit(ctx.model.init)
            init_key, run_key = jax.random.split(jax.random.key(cfg.seed))
            params, ms = init_fns[part](init_key, jnp.asarray(ds.x_train[:1]))
            state = create_state(params, ms, tx, key=run_key, transform=ctx.transform)
            if jax.tree.leaves(state.model_state):
                return ctxs, states, "the model has a model state (e.g. BatchNorm)"
            ctxs.append(ctx)
            states.append(state)
        return ctxs, states, ""

    def _contexts(self, runs: list[Any], built: tuple[list, list] | None = None
                  ) -> tuple[list[RunContext], list[Any], str]:
        """Set up every run of a group (``built``: the contexts and states a split group
        made for them); ``reason`` is empty when they can be vmapped."""
        if built is None:
            ctxs, states, reason = self._setup(runs)
            if reason:
                return ctxs, states, reason
        else:
            ctxs, states = built
        statics = [plans_key(c) for c in ctxs]
        if len(set(statics)) > 1:
            parts: dict[str, list[int]] = {}
            for i, key in enumerate(statics):
                parts.setdefault(key, []).append(i)
            raise SplitGroup([([runs[i] for i in ix], [ctxs[i] for i in ix],
                               [states[i] for i in ix]) for ix in parts.values()])
        sig = {tree_signature((s, c.loss_state)) for s, c in zip(states, ctxs, strict=True)}
        if len(sig) > 1:
            return ctxs, states, "settings build states of different structure"
        extras = {fingerprint(c.cached or {}) for c in ctxs}
        if len(extras) > 1:
            return ctxs, states, "settings feed different per-example data (ctx.cached)"
        if (ctxs[0].loss_state is None) != all(c.loss_state is None for c in ctxs):
            return ctxs, states, "settings build states of different structure"
        # Settings whose whole starting state is identical train identically, unless a
        # swept number is baked into a family's Python code: one train step of each on the
        # same state and batch tells the two apart. Identical ones train once, shared.
        fps = [fingerprint((s, c.loss_state)) for s, c in zip(states, ctxs, strict=True)]
        vk = sorted(vector_keys() - {"seed"})
        vals = [config_hash([get_dotted(r.config.to_dict(), k) for k in vk]) for r in runs]
        first: dict[str, int] = {}
        checked: dict[tuple[str, str], bool] = {}
        ref_out: dict[int, str] = {}
        train_ids = []
        for i, fp in enumerate(fps):
            if fp not in first:
                first[fp] = i
                train_ids.append(i)
                continue
            j = first[fp]
            pair = (vals[j], vals[i])
            if pair not in checked:
                if j not in ref_out:
                    ref_out[j] = one_step_fingerprint(ctxs[j], states[j])
                checked[pair] = one_step_fingerprint(ctxs[i], states[i]) == ref_out[j]
            if not checked[pair]:
                return ctxs, states, ("a swept number is not held in the compression, "
                                      "optimizer or loss state (settings with identical "
                                      "states train differently)")
            train_ids.append(j)
        self._train_ids = train_ids
        return ctxs, states, ""

    def _vectorized(self, runs: list[Any], ctxs: list[RunContext], states: list[Any],
                    group: str, prog_cache: dict[str, VectorizedProgram]) -> list[dict]:
        cfg0, ctx0 = runs[0].config, ctxs[0]
        ds = ctx0.dataset
        t0 = time.perf_counter()
        if group not in prog_cache:
            prog_cache[group] = VectorizedProgram(
                ctx0.model, ctx0.make_optimizer(), batch_size=cfg0.train.batch_size,
                transform=ctx0.transform, loss_fn=ctx0.loss_fn, mesh=self.mesh)
        prog = prog_cache[group]
        before = prog.compiles
        train_ids = getattr(self, "_train_ids", None) or list(range(len(runs)))
        uniq = list(dict.fromkeys(train_ids))  # runs that train; others share their result
        # chunks saved by a killed run first, exactly as they were (members, order, padding)
        index = {runs[i].key: i for i in uniq}
        chunks = [[index[k] for k in keys] for keys in saved_chunks(self.store.dir, index)
                  if len(keys) % self.multiple_of == 0] if self.checkpoint_groups else []
        rest = [i for i in uniq if all(i not in c for c in chunks)]
        n = len(rest)
        size = -(-n // math.ceil(n / self.chunk_size)) if n else 1  # equal, <= chunk_size
        size = -(-size // self.multiple_of) * self.multiple_of  # e.g. the mesh's sweep axis
        for a in range(0, n, size):
            part = rest[a:a + size]
            chunks.append(part + [part[-1]] * (size - len(part)))
        records = []
        for padded in chunks:
            part = list(dict.fromkeys(padded))
            tc = time.perf_counter()
            members = [i for i, t in enumerate(train_ids) if t in part]
            stacked = stack([states[i] for i in padded])
            ls = None if ctx0.loss_state is None else stack([ctxs[i].loss_state for i in padded])
            epochs = cfg0.train.epochs
            gc = None if jax.process_count() > 1 or not self.checkpoint_groups else \
                GroupCheckpoint(self.store.dir, [runs[i].key for i in padded], epochs, self.log)
            resumed = gc.restore(stacked) if gc is not None else None
            if resumed is not None:
                stacked, prog.shared = resumed.state, resumed.shared
                self.log(f"sweep: group {group}: resuming {len(part)} setting(s) after epoch "
                         f"{resumed.history.epoch}/{epochs} from {gc.dir}")
                if self._bar is not None:
                    self._bar.skip(resumed.history.epoch * len(members))
            try:
                out = train_stacked(prog, stacked, ds, seeds=[runs[i].config.seed for i in padded],
                                    epochs=epochs, loss_states=ls, place=self.place,
                                    extra_arrays=ctx0.cached,
                                    start=resumed and resumed.history,
                                    on_epoch_state=epoch_end_hook(gc, prog, self._bar, group,
                                                                  len(members), epochs))
                jax.block_until_ready(out.state)
            finally:
                if gc is not None:
                    gc.close()
            chunk_seconds = time.perf_counter() - tc
            finals = unstack(out.state if self.mesh is None else host_tree(out.state),
                             len(part))
            flops = None
            self._buffer = []
            extra = {} if resumed is None else {"resumed_from_epoch": resumed.history.epoch}
            try:
                for i in members:
                    j = part.index(train_ids[i])
                    shared = sum(t == train_ids[i] for t in train_ids)
                    records.append(self._finish(runs[i], ctxs[i], finals[j], out, j, group,
                                                chunk_seconds, len(part), prog, flops,
                                                shared=shared, share_n=len(members), **extra))
                    flops = records[-1]["ledger"].get("flops", flops)
            finally:  # what finished is written even if a later member fails
                recs, self._buffer = self._buffer, None
                self._flush(recs)
            if gc is not None:
                gc.delete()
            if self._bar is not None:
                self._bar.runs(len(members))
        self.compiles += prog.compiles - before
        self.log(f"sweep: group {group}: {len(uniq)} runs vectorized in "
                 f"{time.perf_counter() - t0:.1f} s, {prog.compiles - before} compile(s)")
        return records

    def _finish(self, run: Any, ctx: RunContext, state: Any, out: Any, j: int, group: str,
                chunk_seconds: float, chunk_n: int, prog: VectorizedProgram,
                flops: float | None, shared: int = 1, share_n: int = 0,
                **extra: Any) -> dict[str, Any]:
        t0 = time.perf_counter()
        steps = len(ctx.dataset.x_train) // run.config.train.batch_size
        last = out.losses.shape[0] if out.diverged_step[j] < 0 else out.diverged_step[j] // steps
        history = [{"epoch": e + 1, "train_loss": float(out.losses[e, j]),
                    "train_accuracy": float(out.accuracies[e, j])} for e in range(last)]
        diverged = bool(out.diverged_step[j] >= 0)
        if history and not diverged and out.test_accuracy is not None:
            history[-1].update({"test_accuracy": float(out.test_accuracy[j]),
                                "test_nll": float(out.test_nll[j])})
        share = chunk_seconds / max(share_n, chunk_n)
        res = FitResult(state, history, diverged,
                        int(out.diverged_step[j]) if diverged else None, share)
        result = finish_run(ctx, res, flops=flops)
        result["metrics"]["total_seconds"] = share + time.perf_counter() - t0
        reason = f"vmapped with {chunk_n - 1} other setting(s)" if chunk_n > 1 else "vmapped"
        if shared > 1:
            reason += (f"; training shared by {shared} settings that differ only after "
                       "training (identical states and train steps)")
        return self._record(run, result, "vectorized", reason, group,
                            compiles=prog.compiles, history=history,
                            timings={"chunk_seconds": chunk_seconds, "chunk_size": chunk_n},
                            **extra)

