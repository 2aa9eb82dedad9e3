"""Formats over a param pytree: a :class:`~jaxcomp.core.Transform` and a tree export.

``format_quant("mxfp4")`` fake-quantizes the selected leaves (kernels by default)
in ``apply`` with the format's straight-through gradient, so
``jaxcomp.train.fit(transform=format_quant(...))`` trains through it. ``format``
is a name, a :class:`Format`, or ordered ``(pattern, format)`` rules over param
paths (first full match wins; a ``None`` format leaves a leaf in float). The
state is empty: formats compute their scales from the current weights.

:func:`encode_tree` exports the same leaves as :class:`Packed` records (others
stay as they are), and :func:`decode_tree` gives back exactly what ``apply``
computes.

Example:
    >>> import jax.numpy as jnp
    >>> params = {"Dense_0": {"kernel": jnp.linspace(-1, 1, 64 * 8).reshape(64, 8),
    ...                       "bias": jnp.zeros(8)}}
    >>> t = format_quant("nvfp4")
    >>> q = t.apply(params, t.init(params))
    >>> packed = encode_tree(params, "nvfp4")
    >>> bool((decode_tree(packed)["Dense_0"]["kernel"] == q["Dense_0"]["kernel"]).all())
    True
    >>> packed_bytes(packed)    # 256 code bytes, 32 block scales, 4 + 32 bytes of f32
    324
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxcomp.core import paths as _paths
from jaxcomp.core.errors import ConfigError
from jaxcomp.core.select import Where, resolve_rules, select
from jaxcomp.core.transform import Transform
from jaxcomp.quant.formats.base import Format, Packed, get_format

FormatSpec = str | Format | Sequence[tuple[str, Any]]


def formats_per_path(params: Any, format: FormatSpec, where: Where = None,
                     **opts: Any) -> dict[str, Format]:
    """``{path: Format}`` for the selected leaves (``opts`` applied to every format)."""
    sel = select(params, where)
    if isinstance(format, str | Format):
        f = get_format(format, **opts)
        return {p: f for p, s in sel.items() if s}
    if not isinstance(format, Sequence) or not all(
            isinstance(r, tuple | list) and len(r) == 2 for r in format):
        raise ConfigError(f"format: got {format!r}; expected a format name, a Format or "
                          f"(pattern, format) rules")
    vals = resolve_rules(params, [tuple(r) for r in format], default=None, what="format")
    out = {p: get_format(vals[p], **opts) for p, s in sel.items()
           if s and vals[p] is not None}
    if not out:
        raise ConfigError(f"format: rules {format!r} give no selected parameter a format")
    return out


def _check_leaves(params: Any, per: dict[str, Format], who: str) -> dict[str, Any]:
    flat = _paths.path_dict(params)
    if not per:
        raise ConfigError(f"{who}: no leaf selected among {len(flat)} leaves; nothing would "
                          f"be quantized")
    for p, f in per.items():
        x = flat[p]
        f._check(x, f"{who}: {p}", check=not isinstance(x, jax.core.Tracer))
    return flat


def format_quant(format: FormatSpec, *, where: Where = None, **opts: Any) -> Transform:
    """Fake-quantize the selected weights with a registered number format.

    Args:
      format: a registered name (``"mxfp4"``, ``"int4"``, ...), a :class:`Format`,
        or ``(pattern, format)`` rules.
      where: which leaves (default: floating leaves with ``ndim >= 2``).
      **opts: format options applied to every selected leaf (``group_size=128``,
        ``block_size=32``, ``axis=...``, ``symmetric=False``).

    Returns:
      A :class:`Transform` with an empty state; ``init`` checks every selected
      leaf (dtype, NaN/inf, block sizes) and names the path in errors.
    """
    if isinstance(format, str | Format):
        get_format(format, **opts)     # unknown names and options fail here, not in init

    def init(params):
        _check_leaves(params, formats_per_path(params, format, where, **opts), "format_quant")
        return {}

    def apply(params, state):
        del state
        per = formats_per_path(params, format, where, **opts)

        def leaf(path, x):
            f = per.get(path)
            return x if f is None else f.fake_quant(x, what=path, check=False)

        return _paths.map_with_path(leaf, params)

    def update(params, state, *, step, grads=None, key=None):
        del params, step, grads, key
        return state

    return Transform(init, apply, update)


def encode_tree(params: Any, format: FormatSpec, *, where: Where = None,
                **opts: Any) -> Any:
    """The params with each selected leaf replaced by its :class:`Packed` export."""
    per = formats_per_path(params, format, where, **opts)
    _check_leaves(params, per, "encode_tree")
    return _paths.map_with_path(
        lambda p, x: per[p].encode(x, what=p) if p in per else x, params)


def _is_packed(x: Any) -> bool:
    return isinstance(x, Packed)


def decode_tree(tree: Any) -> Any:
    """Every :class:`Packed` leaf of ``tree`` decoded (other leaves unchanged)."""
    return jax.tree.map(lambda x: get_format(x.format).decode(x) if _is_packed(x) else x,
                        tree, is_leaf=_is_packed)


def packed_bytes(tree: Any) -> int:
    """Bytes of an exported tree: packed arrays plus every other array leaf."""
    leaves = jax.tree.leaves(tree, is_leaf=_is_packed)
    return int(sum(x.nbytes if _is_packed(x) else jnp.asarray(x).nbytes for x in leaves))
