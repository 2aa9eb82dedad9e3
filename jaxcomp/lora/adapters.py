"""LoRA adapters as leaves beside the kernels they adapt, and the transform that merges them.

Where the adapters live: in the **params**, so any optax optimizer trains them and
one checkpoint holds them. :func:`init_params` returns the params as nested dicts
(an NNX ``State`` becomes ``nnx.to_pure_dict`` form, which jaxcomp's NNX models
accept) with three leaves beside every selected kernel ``.../kernel`` of shape
``(in, out)``:

* ``lora_a`` ``(in, r)`` — random (``init="kaiming"``: uniform ±1/sqrt(in);
  ``"gaussian"``: normal with std 1/r) or from the top-``r`` SVD (``"pissa"``);
* ``lora_b`` ``(r, out)`` — zeros (so the initial function is unchanged);
* ``lora_scale`` ``()`` — ``alpha / r``, an array so a sweep over ``alpha`` compiles once.

A kernel named other than ``kernel`` (say ``w``) gets ``w_lora_a``, ``w_lora_b``,
``w_lora_scale``. :func:`transform`'s ``apply`` (and :func:`merge`) return plain
params: every adapted kernel becomes ``W + scale * A @ B`` and the adapter leaves
are gone, so the model runs unchanged. Gradients reach ``A`` and ``B`` through the
merge; :func:`jaxcomp.lora.freeze_base` keeps the base frozen at no optimizer cost.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp import lora
    >>> params = {"Dense_0": {"kernel": jnp.ones((4, 3)), "bias": jnp.zeros(3)}}
    >>> lp = lora.init_params(params, 2, key=jax.random.key(0), alpha=4.0)
    >>> sorted(lp["Dense_0"]), lp["Dense_0"]["lora_a"].shape, float(lp["Dense_0"]["lora_scale"])
    (['bias', 'kernel', 'lora_a', 'lora_b', 'lora_scale'], (4, 2), 2.0)
    >>> t = lora.transform()
    >>> merged = t.apply(lp, t.init(lp))
    >>> sorted(merged["Dense_0"]), bool((merged["Dense_0"]["kernel"] == 1).all())
    (['bias', 'kernel'], True)

References:
    Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models".
    Meng et al. 2024, "PiSSA: Principal Singular Values and Singular Vectors Adaptation".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcomp.core.errors import ConfigError, check_choice, check_number
from jaxcomp.core.select import resolve_rules, select
from jaxcomp.core.transform import Transform

PyTree = Any
SUFFIXES = ("lora_a", "lora_b", "lora_scale")
INITS = ("kaiming", "gaussian", "pissa")
DEFAULT_WHERE = r"(.*/)?kernel"


def adapter_names(leaf: str) -> tuple[str, str, str]:
    """The adapter leaf names beside a kernel leaf named ``leaf``.

    Example:
        >>> adapter_names("kernel"), adapter_names("w")[0]
        (('lora_a', 'lora_b', 'lora_scale'), 'w_lora_a')
    """
    return SUFFIXES if leaf == "kernel" else tuple(f"{leaf}_{s}" for s in SUFFIXES)


def kernel_name(a_name: str) -> str | None:
    """The kernel leaf name an ``A`` leaf belongs to (``None`` if ``a_name`` is no A leaf)."""
    if a_name == "lora_a":
        return "kernel"
    if a_name.endswith("_lora_a"):
        return a_name[: -len("_lora_a")]
    return None


def is_adapter_path(path: str) -> bool:
    """True for a path whose last part is an adapter leaf (``lora_a``, ``w_lora_b``, ...)."""
    last = path.rsplit("/", 1)[-1]
    return any(last == s or last.endswith("_" + s) for s in SUFFIXES)


def as_dicts(tree: PyTree) -> PyTree:
    """``tree`` with every mapping (and an NNX ``State``) copied into a plain dict.

    Leaves are shared, not copied; lists and tuples become lists.
    """
    if type(tree).__module__.startswith("flax.nnx"):
        from flax import nnx

        tree = nnx.to_pure_dict(tree)
    if isinstance(tree, Mapping):
        return {k: as_dicts(v) for k, v in tree.items()}
    if isinstance(tree, list | tuple) and not hasattr(tree, "_fields"):
        return [as_dicts(v) for v in tree]
    return tree


def _walk(tree: PyTree, prefix: str = ""):
    """``(path, parent, key)`` of every leaf of a tree of dicts and lists."""
    items = tree.items() if isinstance(tree, dict) else enumerate(tree)
    for k, v in items:
        path = f"{prefix}/{k}" if prefix else str(k)
        if isinstance(v, dict | list):
            yield from _walk(v, path)
        else:
            yield path, tree, k


def adapted(tree: PyTree) -> list[tuple[str, dict, str]]:
    """``(kernel_path, parent_dict, kernel_name)`` for every kernel with adapters beside it.

    ``tree`` must be nested dicts (as :func:`init_params` returns).
    """
    out = []
    for path, parent, k in _walk(tree):
        name = kernel_name(str(k)) if isinstance(parent, dict) else None
        if name is not None:
            out.append((path.rsplit("/", 1)[0] + "/" + name if "/" in path else name,
                        parent, name))
    return out


def _kaiming(key, n_in, r):
    bound = 1.0 / np.sqrt(n_in)
    return jax.random.uniform(key, (n_in, r), jnp.float32, -bound, bound)


def _check_rank(path: str, shape: tuple[int, ...], rank: Any) -> int:
    if len(shape) != 2:
        raise ConfigError(f"lora: {path} has shape {tuple(shape)}; LoRA adapts 2-D linear "
                          "kernels (in, out) only: leave it out with where=")
    hi = min(shape)
    if isinstance(rank, bool) or not isinstance(rank, int | np.integer) or not 1 <= rank <= hi:
        raise ConfigError(f"lora: rank for {path} (kernel {tuple(shape)}): got {rank!r}; "
                          f"allowed an integer in [1, {hi}] (min(in, out))")
    return int(rank)


def init_params(params: PyTree, rank: int, *, where: Any = DEFAULT_WHERE,
                key: jax.Array | None = None, alpha: float | None = None,
                init: str = "kaiming") -> PyTree:
    """``params`` (as nested dicts) with ``lora_a``/``lora_b``/``lora_scale`` beside each
    selected kernel.

    Args:
      params: linen params, an NNX ``State`` or any nested dict of arrays.
      rank: the adapter rank ``r`` (static), ``1 <= r <= min(in, out)`` for each layer.
      where: selection of 2-D kernels (:mod:`jaxcomp.core.select` rules); default every
        leaf named ``kernel``. Rules that match nothing are an error.
      key: random key for ``A`` (needed unless ``init="pissa"``).
      alpha: scaling numerator; the update is ``(alpha / r) * A @ B``. Default ``r``
        (scale 1).
      init: ``"kaiming"`` (uniform ±1/sqrt(in)), ``"gaussian"`` (normal, std 1/r) or
        ``"pissa"`` (``A``, ``B`` from the top-``r`` SVD of ``W``; the kernel becomes
        the residual ``W - scale * A @ B``, so the function is unchanged).

    Returns:
      The params as nested dicts with the adapter leaves added (kernels unchanged
      except with ``"pissa"``).
    """
    check_choice("lora: init", init, INITS)
    if isinstance(rank, bool) or not isinstance(rank, int | np.integer) or rank < 1:
        raise ConfigError(f"lora: rank: got {rank!r}; allowed an integer in [1, min(in, out)] "
                          "of every selected kernel")
    if alpha is None:
        alpha = rank
    check_number("lora: alpha", alpha, 0.0, None, lo_open=True)
    if init != "pissa" and key is None:
        raise ConfigError(f"lora: key: got None; init={init!r} draws A at random, pass "
                          "key=jax.random.key(...)")
    tree = as_dicts(params)
    if not isinstance(tree, dict):
        raise ConfigError(f"lora: params is a {type(params).__name__}; expected a dict of "
                          "arrays, linen params or an NNX State")
    done = [p for p, _, _ in adapted(tree)]
    if done:
        raise ConfigError(f"lora: params already carry adapters (at {done[:3]}); merge them "
                          "with lora.merge first")
    sel = select(tree, where)
    leaves = {p: (parent, k) for p, parent, k in _walk(tree)}
    chosen = [p for p, s in sel.items() if s]
    for i, path in enumerate(chosen):
        parent, k = leaves[path]
        if not isinstance(parent, dict):
            raise ConfigError(f"lora: {path} sits in a list; adapters need a named parent")
        w = parent[k]
        r = _check_rank(path, tuple(np.shape(w)), rank)
        names = adapter_names(str(k))
        clash = [n for n in names if n in parent]
        if clash:
            raise ConfigError(f"lora: {path}: its parent already has leaves {clash}")
        scale = jnp.asarray(alpha / r, jnp.float32)
        n_in, n_out = w.shape
        if init == "pissa":
            a, b, resid = _pissa(jnp.asarray(w), r, scale, path)
            parent[k] = resid
        else:
            sub = jax.random.fold_in(key, i)
            a = _kaiming(sub, n_in, r) if init == "kaiming" else \
                jax.random.normal(sub, (n_in, r), jnp.float32) / r
            b = jnp.zeros((r, n_out), jnp.float32)
        parent[names[0]], parent[names[1]], parent[names[2]] = a, b, scale
    return tree


def _pissa(w, r, scale, path):
    from jaxcomp.decompose.blas import one_blas_thread
    from jaxcomp.decompose.svd import truncated_svd

    with one_blas_thread():
        f = truncated_svd(w, r, what=path)
    root = jnp.sqrt(f.s / scale)
    a = f.u * root[None, :]
    b = root[:, None] * f.vt
    resid = (w.astype(jnp.float32) - scale * _matmul(a, b)).astype(w.dtype)
    return a, b, resid


def _matmul(a, b):
    return jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)


def delta(a: jax.Array, b: jax.Array, scale: jax.Array) -> jax.Array:
    """The low-rank update ``scale * a @ b`` (float32, highest matmul precision)."""
    return scale * _matmul(a.astype(jnp.float32), b.astype(jnp.float32))


def merge(params: PyTree, base: Any = None) -> PyTree:
    """Plain params: each adapted kernel becomes ``W + scale * A @ B``, adapters removed.

    Args:
      params: params from :func:`init_params` (possibly trained).
      base: for QLoRA, the quantized base (:func:`jaxcomp.lora.quantize_base`) that
        holds the kernels the params no longer carry.

    Returns:
      Nested dicts shaped like the model's own params (jit-safe; arrays not copied
      where unchanged).
    """
    tree = as_dicts(params)
    found = adapted(tree)
    if not found:
        raise ConfigError("lora.merge: params carry no adapters (no lora_a leaves); build "
                          "them with lora.init_params")
    deq = base.dequantize() if base is not None else {}
    for path, parent, name in found:
        a_n, b_n, s_n = adapter_names(name)
        missing = [n for n in (b_n, s_n) if n not in parent]
        if missing:
            raise ConfigError(f"lora.merge: {path}: adapter leaves {missing} are missing")
        a, b, s = parent.pop(a_n), parent.pop(b_n), parent.pop(s_n)
        if name in parent:
            w = parent[name]
        elif path in deq:
            w = deq[path]
        else:
            raise ConfigError(f"lora.merge: {path}: no kernel in params and none in the "
                              "quantized base; pass base= (lora.quantize_base's result)")
        if tuple(w.shape) != (a.shape[0], b.shape[1]):
            raise ConfigError(f"lora.merge: {path}: kernel {tuple(w.shape)} does not fit "
                              f"A {tuple(a.shape)} @ B {tuple(b.shape)}")
        parent[name] = (w.astype(jnp.float32) + delta(a, b, s)).astype(w.dtype)
    return tree


def _keep(params, state, *, step, grads=None, key=None):
    del params, step, grads, key
    return state


def transform(base: Any = None) -> Transform:
    """The LoRA :class:`~jaxcomp.core.transform.Transform`: ``apply`` = :func:`merge`.

    Args:
      base: the quantized base for QLoRA (:func:`jaxcomp.lora.quantize_base`); it is
        the transform's state (packed codes and scales, dequantized in ``apply``).

    Returns:
      A transform whose ``init(params)`` checks the params carry adapters and returns
      the base (or ``()``), and whose ``update`` keeps the state.
    """
    def init(params):
        if not adapted(as_dicts(params)):
            raise ConfigError("lora.transform: params carry no adapters (no lora_a leaves); "
                              "build them with lora.init_params(params, rank, ...)")
        return () if base is None else base

    def apply(params, state):
        return merge(params, None if isinstance(state, tuple) and not state else state)

    return Transform(init, apply, _keep)


def trainable(params: PyTree, extra: Any = None) -> dict[str, bool]:
    """``{path: trains}``: adapters ``A``/``B`` train, everything else (the base, the
    scales) is frozen; ``extra`` (regex rules, e.g. ``".*/bias"``) trains more leaves.

    Example:
        >>> import jax.numpy as jnp
        >>> p = {"d": {"kernel": jnp.ones((2, 2)), "lora_a": jnp.ones((2, 1)),
        ...            "lora_b": jnp.zeros((1, 2)), "lora_scale": jnp.ones(())}}
        >>> [k for k, v in trainable(p).items() if v]
        ['d/lora_a', 'd/lora_b']
    """
    from jaxcomp.core import paths

    out = {}
    extra_sel: dict[str, Any] = {}
    if extra is not None:
        extra_sel = resolve_rules(params, extra, default=False, what="trainable")
    for p, _ in paths.flatten(params):
        last = p.rsplit("/", 1)[-1]
        trains = last in ("lora_a", "lora_b") or last.endswith(("_lora_a", "_lora_b"))
        if extra_sel.get(p):
            trains = True
        out[p] = trains
    if not any(out.values()):
        raise ConfigError("lora: no trainable leaf (no lora_a/lora_b adapters); build them "
                          "with lora.init_params")
    return out


def count_params(params: PyTree) -> dict[str, int]:
    """Numbers of trainable (adapter) and frozen values in ``params``."""
    from jaxcomp.core import paths

    flags = trainable(params)
    n = {"trainable": 0, "frozen": 0}
    for p, x in paths.flatten(params):
        n["trainable" if flags[p] else "frozen"] += int(np.size(x))
    return n

