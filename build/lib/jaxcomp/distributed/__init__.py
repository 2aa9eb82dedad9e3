"""Scale-out: a ``(sweep, data, model)`` device mesh, data-parallel training,
sweeps sharded over devices, and several processes via ``jax.distributed``.

See ``docs/scale_out.md``.
"""

from jaxcomp.distributed.mesh import AXES, axis_size, make_mesh, mesh_config, mesh_shape, parse_mesh

__all__ = ["AXES", "axis_size", "make_mesh", "mesh_config", "mesh_shape", "parse_mesh"]
