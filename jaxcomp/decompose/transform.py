"""Decompose-then-reconstruct as a jaxcomp :class:`~jaxcomp.core.transform.Transform`.

``apply`` returns params whose selected kernels are replaced by their low-rank
reconstruction; ranks are static, so a sweep over ranks is a sweep over settings
like any other transform, and training through ``apply`` trains the factors'
span.

* ``svd``: the state holds the top-``r`` left singular vectors ``U`` of each kernel;
  ``apply`` is ``U Uᵀ W`` — the truncated SVD of ``W`` when ``U`` is current.
* ``tucker2``: the state holds ``U_in, U_out`` (HOSVD + HOOI); ``apply`` is
  ``W ×₃ U_in U_inᵀ ×₄ U_out U_outᵀ`` — the Tucker-2 reconstruction.
* ``cp``: the state holds the CP factors; ``apply`` runs ``refine_iters`` ALS sweeps
  warm-started from them on the current kernel and reconstructs.

``update`` recomputes the factors from the params it is given (every ``every`` steps,
gated by ``lax.cond``); in :func:`jaxcomp.train.train_step_fn` those are the params the
step's gradients were taken at, before the optimizer moves them.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp.decompose.transform import decompose_reconstruct
    >>> params = {"Dense_0": {"kernel": jax.random.normal(jax.random.key(0), (6, 5)),
    ...                       "bias": jnp.zeros(5)}}
    >>> t = decompose_reconstruct("svd", rank=2)
    >>> out = jax.jit(t.apply)(params, t.init(params))
    >>> int(jnp.linalg.matrix_rank(out["Dense_0"]["kernel"]))
    2
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxcomp.core import guards
from jaxcomp.core import paths as _paths
from jaxcomp.core.errors import ConfigError, check_choice
from jaxcomp.core.select import Where, resolve_rules, select
from jaxcomp.core.transform import Transform
from jaxcomp.decompose._checks import METHODS, check_iters, check_rank
from jaxcomp.decompose.cp import cp_als, cp_reconstruct
from jaxcomp.decompose.svd import truncated_svd
from jaxcomp.decompose.tucker import check_tucker2_ranks, tucker2, tucker2_project


def _ranks(params, rank, paths) -> dict[str, Any]:
    if isinstance(rank, int | tuple) and not isinstance(rank, bool):
        return dict.fromkeys(paths, rank)
    if isinstance(rank, Sequence) and not isinstance(rank, str):
        if any(not isinstance(r, tuple | list) for r in rank):
            raise ConfigError(f"rank: got the list {rank!r}; a list is read as (pattern, rank) "
                              "rules. For Tucker-2 ranks pass a tuple (r_in, r_out); for one "
                              "rank an int")
        rules = resolve_rules(params, list(rank), default=None, what="rank")
        missing = [p for p in paths if rules[p] is None]
        if missing:
            raise ConfigError(f"rank: no rank rule matches the selected paths {missing}")
        return {p: rules[p] for p in paths}
    raise ConfigError(f"rank: got {rank!r}; expected an int, a (r_in, r_out) pair or "
                      "(pattern, rank) rules")


def decompose_reconstruct(method: str = "svd", rank: Any = 1, *, where: Where = None,
                          n_iter: int = 10, refine_iters: int = 1, every: int = 1,
                          key: jax.Array | None = None) -> Transform:
    """The decompose-then-reconstruct transform.

    Args:
      method: ``"svd"`` (2-D kernels), ``"tucker2"`` or ``"cp"`` (4-D conv kernels).
      rank: an int (CP / SVD rank, or both Tucker ranks), an ``(r_in, r_out)`` pair,
        or ``[(pattern, rank), ...]`` rules over paths. Static.
      where: which kernels (default: every float leaf with ``ndim >= 2``).
      n_iter: HOOI sweeps (Tucker-2) or ALS sweeps (CP) in ``init``/``update``.
      refine_iters: CP only: ALS sweeps in ``apply`` from the state's factors.
      every: ``update`` refreshes the factors when ``step % every == 0``.
      key: CP initialization key (required for ``cp``).

    Raises:
      ConfigError: bad method, a rank out of range for a kernel (the path is named),
        a kernel of the wrong number of dimensions for the method.
    """
    check_choice("decompose.method", method, METHODS)
    n_iter = check_iters("decompose", n_iter)
    refine_iters = check_iters("decompose.refine_iters", refine_iters)
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ConfigError(f"decompose.every: got {every!r}; allowed range [1, inf)")
    if method == "cp" and key is None:
        raise ConfigError("decompose.key: method 'cp' needs an explicit key for its "
                          "initialization")

    def plan(params) -> dict[str, Any]:
        sel = select(params, where)
        flat = _paths.path_dict(params)
        paths = [p for p, s in sel.items() if s]
        ranks = _ranks(params, rank, paths)
        out = {}
        for p in paths:
            shape = jnp.shape(flat[p])
            if method == "svd":
                if len(shape) != 2:
                    raise ConfigError(f"{p}: SVD needs a 2-D kernel; got shape {shape}")
                out[p] = check_rank(p, ranks[p], min(shape))
            elif method == "tucker2":
                out[p] = check_tucker2_ranks(shape, ranks[p], p)
            else:
                if len(shape) < 2:
                    raise ConfigError(f"{p}: CP needs >= 2 dims; got shape {shape}")
                out[p] = check_rank(p, ranks[p])
        return out

    def factors(path, w, r, prev=None, k=None):
        if method == "svd":
            return truncated_svd(w, r, what=path).u
        if method == "tucker2":
            t = tucker2(w, r, n_iter=n_iter, what=path)
            return (t.u_in, t.u_out)
        if prev is None:
            d = cp_als(w, r, n_iter=n_iter, key=k, what=path)
        else:
            d = cp_als(w, r, n_iter=n_iter, init=prev, what=path)
        return tuple(f * d.weights ** (1.0 / len(d.factors)) for f in d.factors)

    def _keys(p):
        return dict(zip(p, jax.random.split(key, len(p)), strict=True)) if key is not None \
            else dict.fromkeys(p)

    def init(params):
        guards.require_leaves("decompose.init", params)
        pl = plan(params)
        flat = _paths.path_dict(params)
        ks = _keys(pl)
        return {p: factors(p, flat[p], r, k=ks[p]) for p, r in pl.items()}

    def reconstruct(path, w, st):
        w32 = jnp.asarray(w, jnp.float32)
        if method == "svd":
            out = st @ (st.T @ w32)
        elif method == "tucker2":
            out = tucker2_project(w32, *st)
        else:
            d = cp_als(w32, st[0].shape[1], n_iter=refine_iters, init=st, what=path)
            out = cp_reconstruct(d)
        return out.astype(jnp.result_type(w))

    def check(what, params, state):
        if not isinstance(state, dict) or not all(isinstance(p, str) for p in state):
            raise ConfigError(f"{what}: got {guards.describe_state(state)} as state; expected "
                              "decompose_reconstruct's state ({path: factors}) from its init")
        pd = _paths.path_dict(params)
        missing = [p for p in state if p not in pd]
        if missing and all(p in ("masks", "bits", "gate", "schedule") for p in state):
            raise ConfigError(f"{what}: got {guards.describe_state(state)}; expected "
                              "decompose_reconstruct's state ({path: factors}) from its init")
        if missing:
            guards.check_same_leaves(what, params, dict.fromkeys(state))
        for p, st in state.items():
            now, dims = tuple(jnp.shape(pd[p])), _dims(st)
            if any(d >= len(now) or now[d] != n for d, n in dims.items()):
                at_init = ", ".join(f"axis {d}: {n}" for d, n in dims.items())
                raise ConfigError(f"{what}: {p!r} has shape {now}, but the factors from init "
                                  f"were built for ({at_init}); the params changed since "
                                  "(surgery, a transpose?): re-run init")

    def _dims(st):
        if method == "svd":
            return {0: st.shape[0]}
        if method == "tucker2":
            return {2: st[0].shape[0], 3: st[1].shape[0]}
        return {i: f.shape[0] for i, f in enumerate(st)}

    def apply(params, state):
        check("decompose.apply", params, state)
        return _paths.map_with_path(
            lambda p, w: reconstruct(p, w, state[p]) if p in state else w, params)

    def update(params, state, *, step, grads=None, key=None):
        del grads, key
        check("decompose.update", params, state)
        flat = _paths.path_dict(params)

        def refresh(_):
            return {p: factors(p, flat[p], _rank_of(p, s), prev=s) for p, s in state.items()}

        def keep(_):
            return state

        return lax.cond(jnp.asarray(step) % every == 0, refresh, keep, None)

    def _rank_of(p, s):
        if method == "svd":
            return s.shape[1]
        if method == "tucker2":
            return (s[0].shape[1], s[1].shape[1])
        return s[0].shape[1]

    return Transform(init, apply, update)
