"""A per-leaf sparsity table (like Distiller's): shape, non-zeros, sparsity, FLOPs before/after.

FLOPs of a weight leaf are ``2 × weights × output positions`` per example
(1 position for a dense layer, ``H×W`` of the output for a convolution);
positions come from one traced forward pass when a linen model is given, and
are taken as 1 otherwise. "After" counts only non-zero weights — the work a
sparse kernel would do, not a measured speed-up.

Example:
    >>> import jax.numpy as jnp
    >>> rows = sparsity_report({"Dense_0": {"kernel": jnp.array([[0., 1.], [2., 0.]])}})
    >>> rows[0]["nonzeros"], rows[0]["sparsity"], rows[0]["flops_after"]
    (2, 0.5, 4)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from jaxcomp.core import paths


def output_positions(model: Any, params: Any, model_state: Any, input_shape: tuple
                     ) -> dict[str, int]:
    """``{module_path: output positions per example}`` from one forward pass.

    Linen models are traced abstractly; NNX models (whose ``module`` is their
    constructor) are built once and called on one zero example, every submodule's
    output recorded through :func:`jaxcomp.flax.intercept.intercept_nnx`.
    """
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    from jaxcomp.flax.intercept import intercept_linen, intercept_nnx

    module = getattr(model, "module", None)
    seen: dict[str, int] = {}

    def record(path, module, args, kwargs, call_next):
        out = call_next(*args, **kwargs)
        if hasattr(out, "shape") and len(out.shape) >= 2:
            seen[path] = int(math.prod(out.shape[1:-1]))
        return out

    if isinstance(module, nn.Module):
        x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
        with intercept_linen([".*"], record):
            jax.eval_shape(lambda p, s, x: model.apply(p, s, x, train=False)[0], params,
                           model_state, x)
    elif callable(module):  # an NNX constructor ``make(rngs)``
        from flax import nnx

        net = module(nnx.Rngs(0))
        if not isinstance(net, nnx.Module):
            return {}
        net.eval()
        with intercept_nnx(net, [".*"], record, check=False):
            net(jnp.zeros((1, *input_shape), jnp.float32))
    return seen


def sparsity_report(params: Any, *, model: Any = None, model_state: Any = None,
                    input_shape: tuple | None = None, min_ndim: int = 2,
                    positions: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """One row per leaf with ``ndim >= min_ndim`` plus a ``total`` row.

    Rows: ``path, shape, params, nonzeros, sparsity, flops_before, flops_after``.
    ``positions`` (from :func:`output_positions`) replaces the traced forward pass.
    """
    if positions is not None:
        pos = positions
    else:
        pos = output_positions(model, params, model_state or {}, input_shape) \
            if model is not None and input_shape is not None else {}
    rows = []
    for p, x in paths.flatten(params):
        a = np.asarray(x)
        if a.ndim < min_ndim:
            continue
        n, nz = int(a.size), int(np.count_nonzero(a))
        k = pos.get(p.rsplit("/", 1)[0], 1)
        rows.append({"path": p, "shape": tuple(a.shape), "params": n, "nonzeros": nz,
                     "sparsity": round(1.0 - nz / n, 6), "flops_before": 2 * n * k,
                     "flops_after": 2 * nz * k})
    if rows:
        tot = {k: sum(r[k] for r in rows) for k in ("params", "nonzeros", "flops_before",
                                                     "flops_after")}
        rows.append({"path": "total", "shape": (), **tot,
                     "sparsity": round(1.0 - tot["nonzeros"] / tot["params"], 6)})
    return rows


def format_report(rows: list[dict[str, Any]]) -> str:
    """The rows as a fixed-width text table.

    Example:
        >>> import jax.numpy as jnp
        >>> print(format_report(sparsity_report({"w": jnp.eye(2)})).splitlines()[0].split())
        ['path', 'shape', 'params', 'nonzeros', 'sparsity', 'flops_before', 'flops_after']
    """
    cols = ["path", "shape", "params", "nonzeros", "sparsity", "flops_before", "flops_after"]
    text = [[str(r[c]) if c != "sparsity" else f"{r[c]:.4f}" for c in cols] for r in rows]
    width = [max(len(c), *(len(t[i]) for t in text)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, width, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(t, width, strict=True)) for t in text]
    return "\n".join(lines)


def _any_zero_unit(params: Any) -> bool:
    """Whether some kernel (``ndim >= 2``) has an output slice (last axis) all zero."""
    for _, x in paths.flatten(params):
        a = np.asarray(x)
        if a.ndim >= 2 and not np.any(a.reshape(-1, a.shape[-1]) != 0, axis=0).all():
            return True
    return False


def removable_units(graph: Any, params: Any) -> dict[str, np.ndarray]:
    """``{group: kept channel indices}`` for the groups with units whose every
    producer slice in ``params`` (kernel output slice, bias, norm scale and bias) is
    zero — units that compute a constant zero and can be removed exactly. At least
    one unit of a group is kept.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxcomp.models import get_model
        >>> from jaxcomp.prune.groups import dependency_groups
        >>> m = get_model("mlp", input_shape=(4,), num_classes=2, features=(3,))
        >>> p, s = m.init(jax.random.key(0), jnp.ones((1, 4)))
        >>> p["Dense_0"]["kernel"] = p["Dense_0"]["kernel"].at[:, 1].set(0.0)
        >>> removable_units(dependency_groups(m, p, s, jnp.ones((1, 4))), p)
        {'Dense_0/kernel': array([0, 2])}
    """
    from jaxcomp.prune.channels import channel_view

    leaves = paths.path_dict(params)
    out = {}
    for name, g in graph.groups.items():
        keep = None
        for m in g.producers:
            if m.collection != "params" or m.path not in leaves:
                continue
            k = np.any(channel_view(np.asarray(leaves[m.path]), m, np) != 0, axis=0)
            keep = k if keep is None else keep | k
        if keep is None or keep.all():
            continue
        if not keep.any():
            keep[0] = True
        out[name] = np.flatnonzero(keep)
    return out


def effective_flops(model: Any, params: Any, model_state: Any, input_shape: tuple, *,
                    dense_flops: float | None = None,
                    positions: dict[str, int] | None = None) -> dict[str, Any]:
    """FLOPs of a pruned model when the pruning is exploited.

    * ``flops_shrunk``: XLA's dense count of the smaller model left after removing
      the units :func:`removable_units` finds (structured pruning: smaller
      layers; ``dense_flops`` when none can be removed);
    * ``flops_sparse``: ``flops_shrunk`` minus ``2 × output positions`` per zero
      weight that model still holds — what a sparse kernel would do; for
      unstructured sparsity it is the dense count minus
      :func:`sparsity_report`'s ``flops_before - flops_after``;
    * ``units_removed``: how many units the smaller model lacks.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxcomp.models import get_model
        >>> m = get_model("mlp", input_shape=(4,), num_classes=2, features=(3,))
        >>> p, s = m.init(jax.random.key(0), jnp.ones((1, 4)))
        >>> p["Dense_0"]["kernel"] = p["Dense_0"]["kernel"].at[:, 1].set(0.0)
        >>> e = effective_flops(m, p, s, (4,))
        >>> e["units_removed"], e["flops_sparse"] == e["flops_shrunk"]
        (1, True)
    """
    import jax.numpy as jnp

    from jaxcomp.core.errors import ConfigError
    from jaxcomp.experiment.ledger import forward_flops
    from jaxcomp.prune import groups, surgery

    if dense_flops is None:
        dense_flops = forward_flops(model, params, model_state, input_shape)
    if positions is None:
        positions = output_positions(model, params, model_state, input_shape)
    small_params, shrunk, removed = params, float(dense_flops), 0
    x = jnp.zeros((1, *input_shape), jnp.float32)
    try:  # (the dependency analysis only where some kernel has an all-zero output slice)
        if _any_zero_unit(params):
            graph = groups.dependency_groups(model, params, model_state, x)
            keep = removable_units(graph, params)
            if keep:
                small = surgery.shrink(model, params, model_state, x, keep=keep, graph=graph)
                shrunk = forward_flops(small.model, small.params, small.model_state,
                                       input_shape)
                small_params = small.params
                removed = sum(graph.groups[g].size - len(k) for g, k in keep.items())
    except (ConfigError, ValueError, TypeError, NotImplementedError, KeyError):
        pass  # units that cannot be analysed or removed exactly: counted in place
    rows = sparsity_report(small_params, positions=positions)
    skipped = rows[-1]["flops_before"] - rows[-1]["flops_after"] if rows else 0
    return {"flops_shrunk": shrunk, "flops_sparse": shrunk - skipped, "units_removed": removed}
