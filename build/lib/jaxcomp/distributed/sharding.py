"""Shardings over a ``(sweep, data, model)`` mesh, and moving pytrees onto them.

- batches: leading (example) axis split over ``data``;
- parameters and optimizer state: replicated, or — when the ``model`` axis is
  larger than 1 — each large leaf split along its largest dimension divisible by
  the ``model`` size (FSDP-style; XLA gathers them for the matmuls and
  reduce-scatters the gradients);
- a stacked sweep state: its leading (setting) axis split over ``sweep``.

Everything here works the same with one process or many: arrays are built with
``jax.make_array_from_callback`` / ``make_array_from_process_local_data``, so
each process only materializes the pieces its own devices hold.

Example:
    >>> import jax.numpy as jnp, numpy as np
    >>> from jaxcomp.distributed import make_mesh
    >>> from jaxcomp.distributed.sharding import put_global, replicated, to_host
    >>> mesh = make_mesh()
    >>> x = put_global({"w": np.ones((2, 3), np.float32)}, replicated(mesh))
    >>> to_host(x["w"]).sum()
    np.float32(6.0)
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxcomp.core.errors import ConfigError
from jaxcomp.distributed.mesh import axis_size

MIN_SHARD_SIZE = 2**14


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array."""
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, axis: int = 0) -> NamedSharding:
    """Split dimension ``axis`` (the examples) over ``data``; the rest replicated."""
    return NamedSharding(mesh, P(*([None] * axis), "data"))


def check_divisible(what: str, value: int, mesh: Mesh, axis: str) -> int:
    """ConfigError unless ``value`` is a positive multiple of the ``axis`` size.

    Example:
        >>> from jaxcomp.distributed import make_mesh
        >>> check_divisible("train.batch_size", 32, make_mesh(), "data")
        32
    """
    n = axis_size(mesh, axis)
    if not isinstance(value, int | np.integer) or value <= 0 or value % n:
        raise ConfigError(
            f"{what}: got {value!r}; must be a positive multiple of the mesh's {axis} axis "
            f"size {n} (mesh {dict(mesh.shape)}), so every device gets an equal share")
    return int(value)


def _leaf_spec(shape: tuple[int, ...], model: int, min_size: int) -> P:
    if model == 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
        return P()
    dims = sorted(range(len(shape)), key=lambda d: -shape[d])
    for d in dims:
        if shape[d] % model == 0:
            return P(*([None] * d), "model")
    return P()


def state_shardings(mesh: Mesh, tree: Any, *, min_size: int = MIN_SHARD_SIZE) -> Any:
    """Shardings for a (single-setting) params / optimizer / train state pytree.

    Replicated unless the mesh has ``model > 1``: then each leaf with at least
    ``min_size`` elements is split over ``model`` along its largest divisible
    dimension. Leaves of equal shape (a kernel and its Adam moments) get equal
    shardings.
    """
    model = axis_size(mesh, "model")
    return jax.tree.map(lambda x: NamedSharding(mesh, _leaf_spec(np.shape(x), model, min_size)),
                        tree)


def stacked_shardings(mesh: Mesh, tree: Any, *, min_size: int = MIN_SHARD_SIZE) -> Any:
    """Shardings for a stacked sweep state: the leading setting axis over ``sweep``;
    with ``model > 1``, each setting's large leaves also split over ``model`` as in
    :func:`state_shardings` (one setting's leaf of at least ``min_size`` elements).

    Example:
        >>> import numpy as np
        >>> from jaxcomp.distributed import make_mesh
        >>> sh = stacked_shardings(make_mesh(), {"w": np.zeros((4, 8, 8))})
        >>> tuple(sh["w"].spec)
        ('sweep',)
    """
    n = axis_size(mesh, "sweep")
    model = axis_size(mesh, "model")

    def one(x):
        shape = np.shape(x)
        if not shape:
            raise ConfigError("sweep state: a leaf has no leading setting axis (a scalar); "
                              "stack the per-setting states first")
        if shape[0] % n:
            raise ConfigError(
                f"sweep.size: got {shape[0]} settings; must be a multiple of the mesh's sweep "
                f"axis size {n} (mesh {dict(mesh.shape)}); pad the grid or change --mesh")
        return NamedSharding(mesh, P("sweep", *_leaf_spec(shape[1:], model, min_size)))

    return jax.tree.map(one, tree)


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _put_array(x: Any, sharding: NamedSharding) -> jax.Array:
    if isinstance(x, jax.Array) and x.sharding == sharding:
        return x
    if _is_key(x):
        data = _put_array(jax.random.key_data(x), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return jax.device_put(x, sharding)
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


def put_global(tree: Any, shardings: Any) -> Any:
    """Place every leaf of ``tree`` on its sharding (one sharding for all, or a tree).

    Every process must pass the same values (e.g. a state initialized from the
    same seed); each copies only the pieces its devices hold. PRNG key arrays
    are supported.
    """
    if isinstance(shardings, NamedSharding):
        return jax.tree.map(lambda x: _put_array(x, shardings), tree)
    return jax.tree.map(_put_array, tree, shardings)


def shard_stacked(tree: Any, mesh: Mesh) -> Any:
    """A stacked sweep state on the mesh, its leading setting axis split over ``sweep``."""
    return put_global(tree, stacked_shardings(mesh, tree))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Every leaf of ``tree`` whole on every device of ``mesh``."""
    return put_global(tree, replicated(mesh))


def shard_batch(batch: Any, mesh: Mesh, what: str = "train.batch_size") -> Any:
    """A (global, numpy) batch dict split over ``data`` along its leading axis.

    Raises ConfigError (naming ``what``) unless the batch size is a multiple of
    the ``data`` axis size.

    Example:
        >>> import numpy as np
        >>> from jaxcomp.distributed import make_mesh
        >>> b = shard_batch({"x": np.ones((4, 2)), "y": np.arange(4)}, make_mesh())
        >>> tuple(b["x"].sharding.spec)
        ('data',)
    """
    sizes = {np.shape(x)[0] for x in jax.tree.leaves(batch)}
    if len(sizes) != 1:
        raise ConfigError(f"{what}: the batch's arrays disagree on the batch size: {sorted(sizes)}")
    check_divisible(what, sizes.pop(), mesh, "data")
    return put_global(batch, batch_sharding(mesh))


def process_rows(sharding: NamedSharding, global_shape: tuple[int, ...],
                 axis: int = 0) -> slice:
    """The contiguous range of ``axis`` indices this process's devices hold.

    With the ``data`` axis spanning processes, each process loads only these rows
    (its distinct shard of the batch); with it inside one process, every process
    loads them all.

    Example:
        >>> from jaxcomp.distributed import make_mesh
        >>> process_rows(batch_sharding(make_mesh()), (8, 3))
        slice(0, 8, None)
    """
    idx = sharding.addressable_devices_indices_map(tuple(global_shape)).values()
    starts, stops = [], []
    for index in idx:
        s = index[axis] if axis < len(index) else slice(None)
        start, stop, _ = s.indices(global_shape[axis])
        starts.append(start)
        stops.append(stop)
    lo, hi = min(starts), max(stops)
    covered = sum(b - a for a, b in sorted(set(zip(starts, stops, strict=True))))
    if covered != hi - lo:
        raise ConfigError(f"sharding {sharding.spec}: this process's rows along axis {axis} "
                          "are not contiguous; reorder the mesh devices")
    return slice(lo, hi)


def from_process_rows(sharding: NamedSharding, global_shape: tuple[int, ...],
                      load: Any, axis: int = 0) -> jax.Array:
    """A global array whose ``axis`` rows this process loads with ``load(slice)``.

    ``load`` returns the numpy rows ``[lo, hi)`` (the process-local data);
    :func:`jax.make_array_from_process_local_data` assembles the global array.
    """
    rows = process_rows(sharding, global_shape, axis)
    local = np.asarray(load(rows))
    return jax.make_array_from_process_local_data(sharding, local, tuple(global_shape))


def to_host(x: Any) -> np.ndarray:
    """A numpy copy of ``x``: replicated or fully addressable arrays are read
    locally; arrays split over several processes are all-gathered."""
    if not isinstance(x, jax.Array):
        return np.asarray(x)
    if _is_key(x):
        x = jax.random.key_data(x)
    if x.is_fully_addressable:
        return np.asarray(x)
    if x.sharding.is_fully_replicated:
        return np.asarray(x.addressable_data(0))
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def host_tree(tree: Any) -> Any:
    """Every leaf of ``tree`` as a process-local value: arrays become numpy copies
    (all-gathered when split over processes, see :func:`to_host`); PRNG key arrays
    stay key arrays (on this process's default device).

    Example:
        >>> import jax, numpy as np
        >>> t = host_tree({"w": jax.numpy.ones(2), "k": jax.random.key(0)})
        >>> type(t["w"]).__name__, jax.dtypes.issubdtype(t["k"].dtype, jax.dtypes.prng_key)
        ('ndarray', True)
    """
    def one(x: Any) -> Any:
        if _is_key(x):
            return jax.random.wrap_key_data(to_host(x), impl=jax.random.key_impl(x))
        return to_host(x) if isinstance(x, jax.Array) else x

    return jax.tree.map(one, tree)


def constrain(tree: Any, shardings: Any) -> Any:
    """``with_sharding_constraint`` for a tree inside jit (one sharding or a tree)."""
    if isinstance(shardings, NamedSharding):
        return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, shardings), tree)
    return jax.tree.map(jax.lax.with_sharding_constraint, tree, shardings)


__all__ = [
    "batch_sharding", "check_divisible", "constrain", "from_process_rows", "host_tree",
    "process_rows",
    "put_global", "replicate", "replicated", "shard_batch", "shard_stacked",
    "stacked_shardings", "state_shardings", "to_host",
]
