"""A device mesh from a config: ``{sweep: S, data: D, model: M}``.

Three named axes, always all three (size-1 axes cost nothing, and every
``PartitionSpec`` in jaxcomp may name any of them):

- ``sweep``: the stacked settings of a vectorized sweep are split over it, so S
  devices (or S groups of devices) train S groups of settings at once;
- ``data``: every batch is split over it; XLA all-reduces the gradients;
- ``model``: large parameters (and their optimizer moments) are split over it
  (FSDP-style), for models too large to replicate.

One size may be ``-1``: "all the devices the other axes leave". The product must
equal the number of devices (all processes together). The ``sweep`` axis is the
outermost, so on several hosts it spans the hosts (a sweep needs no traffic
between its settings) and ``model`` the innermost (the fastest links).

Example:
    >>> import jax
    >>> from jaxcomp.distributed.mesh import make_mesh, parse_mesh
    >>> parse_mesh("sweep=2,data=4")
    {'sweep': 2, 'data': 4}
    >>> mesh = make_mesh({"data": -1})
    >>> dict(mesh.shape) == {"sweep": 1, "data": jax.device_count(), "model": 1}
    True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import ml_collections
import numpy as np

from jaxcomp.core.errors import ConfigError, suggest

if TYPE_CHECKING:  # JAX is imported when a mesh is made, not for config blocks and flags
    from jax.sharding import Mesh

AXES = ("sweep", "data", "model")
MeshSpec = Mapping[str, int] | str | None


def parse_mesh(text: str) -> dict[str, int]:
    """``"sweep=2,data=4"`` → ``{"sweep": 2, "data": 4}`` (the CLI's ``--mesh``)."""
    out: dict[str, int] = {}
    for item in filter(None, (s.strip() for s in str(text).split(","))):
        if "=" not in item:
            raise ConfigError(f"mesh: got {text!r}; expected AXIS=SIZE pairs such as "
                              f"'sweep=2,data=4' (axes: {', '.join(AXES)})")
        name, size = (s.strip() for s in item.split("=", 1))
        if name in out:
            raise ConfigError(f"mesh: got {text!r}; axis {name!r} is given twice")
        try:
            out[name] = int(size)
        except ValueError:
            raise ConfigError(f"mesh.{name}: got {size!r}; expected an integer >= 1 "
                              "or -1 (all remaining devices)") from None
    return out


def _as_dict(spec: MeshSpec) -> dict[str, int]:
    if spec is None:
        return {}
    if isinstance(spec, str):
        return parse_mesh(spec)
    if isinstance(spec, ml_collections.ConfigDict):
        return dict(spec.to_dict())
    if isinstance(spec, Mapping):
        return dict(spec)
    raise ConfigError(f"mesh: got {spec!r}; expected a dict such as {{'sweep': 2, 'data': 4}} "
                      "or a string 'sweep=2,data=4'")


def mesh_shape(spec: MeshSpec, num_devices: int) -> dict[str, int]:
    """Validate ``spec`` against ``num_devices``; return all three axis sizes.

    Missing axes are 1, except that an empty spec means ``data=-1`` (plain data
    parallelism over every device).

    Example:
        >>> mesh_shape({"sweep": 2, "data": -1}, 8)
        {'sweep': 2, 'data': 4, 'model': 1}
    """
    raw = _as_dict(spec)
    if not raw:
        raw = {"data": -1}
    for name in raw:
        if name not in AXES:
            raise ConfigError(f"mesh.{name}: unknown mesh axis; allowed: "
                              f"{', '.join(AXES)}{suggest(name, AXES)}")
    sizes = {}
    for name in AXES:
        v = raw.get(name, 1)
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or (v < 1 and v != -1):
            raise ConfigError(f"mesh.{name}: got {v!r}; allowed: an integer >= 1, or -1 for "
                              "all remaining devices")
        sizes[name] = int(v)
    free = [n for n, v in sizes.items() if v == -1]
    if len(free) > 1:
        raise ConfigError(f"mesh: got {raw}; at most one axis may be -1, got {free}")
    fixed = math.prod(v for v in sizes.values() if v != -1)
    if free:
        if num_devices % fixed:
            raise ConfigError(
                f"mesh.{free[0]}: -1 cannot fill the mesh: {num_devices} devices are not "
                f"divisible by the other axes' product {fixed} ({_fmt(sizes)})")
        sizes[free[0]] = num_devices // fixed
    total = math.prod(sizes.values())
    if total != num_devices:
        raise ConfigError(
            f"mesh: {_fmt(sizes)} needs {total} devices but {num_devices} are available "
            f"(jax.device_count() over all processes); make the product of the axis sizes "
            f"equal {num_devices}, or set one axis to -1")
    return sizes


def _fmt(sizes: Mapping[str, int]) -> str:
    return ",".join(f"{k}={v}" for k, v in sizes.items())


def make_mesh(spec: MeshSpec = None, *, devices: Sequence[Any] | None = None) -> Mesh:
    """A :class:`jax.sharding.Mesh` with axes ``("sweep", "data", "model")``.

    Args:
      spec: a dict / ConfigDict ``{sweep, data, model}`` or a string
        ``"sweep=2,data=4"``; ``None`` puts every device on ``data``.
      devices: the devices to use (default: ``jax.devices()``, all processes').

    Raises:
      ConfigError: an unknown axis, a bad size, or sizes whose product is not
        the number of devices.
    """
    import jax
    from jax.sharding import AxisType, Mesh

    devices = list(jax.devices() if devices is None else devices)
    sizes = mesh_shape(spec, len(devices))
    shape = tuple(sizes[a] for a in AXES)
    types = (AxisType.Auto,) * len(AXES)
    try:
        return jax.make_mesh(shape, AXES, axis_types=types, devices=devices)
    except Exception:  # topology-aware placement failed: keep the given order
        return Mesh(np.asarray(devices, dtype=object).reshape(shape), AXES, axis_types=types)


def axis_size(mesh: Mesh, name: str) -> int:
    """The size of axis ``name`` (1 if the mesh lacks it)."""
    return int(dict(mesh.shape).get(name, 1))


def mesh_config() -> ml_collections.ConfigDict:
    """The config block for ``base_config()``: ``mesh.sweep / mesh.data / mesh.model``.

    Defaults run data-parallel over every device (``data=-1``), which is a plain
    single-device run on one device.

    Example:
        >>> cfg = mesh_config()
        >>> mesh_shape(cfg, 4)
        {'sweep': 1, 'data': 4, 'model': 1}
    """
    return ml_collections.ConfigDict({"sweep": 1, "data": -1, "model": 1})


__all__ = ["AXES", "axis_size", "make_mesh", "mesh_config", "mesh_shape", "parse_mesh"]
