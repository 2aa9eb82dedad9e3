"""Weight sharing (Deep Compression, Han et al. 2016) as a jaxcomp ``Transform``.

* ``init`` runs per-layer 1-D k-means over each selected tensor's **non-zero**
  weights (pruned zeros stay zero and get no centroid; their index is ``-1``);
* ``apply`` gives ``centroids[index]``. The raw params pass a straight-through
  gradient (the value is exactly the shared weight, the gradient flows to the
  raw params unchanged), so the train step's ``grads`` are the gradients of the
  shared weights;
* ``update`` fine-tunes the centroids: each centroid's gradient is the **sum**
  of the gradients of the weights that share it, then an optax optimizer step
  (plain SGD at ``learning_rate`` by default, as in the paper).

The centroid state lives in the compression state, so ``jaxcomp.train.fit``
(``transform=``) trains it; give ``fit`` a no-op optimizer for the raw params
(``optax.set_to_zero()``) when only the centroids should learn.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp.quant.sharing import weight_sharing
    >>> params = {"w": jnp.array([[0.0, 1.0, 1.1], [-1.0, -0.9, 0.0]])}
    >>> t = weight_sharing(k=2, init="linear", where=["w"], learning_rate=0.5)
    >>> s = t.init(params)
    >>> [[round(float(v), 3) for v in row] for row in t.apply(params, s)["w"]]
    [[0.0, 1.05, 1.05], [-0.95, -0.95, 0.0]]
    >>> g = {"w": jnp.ones((2, 3))}  # each centroid's gradient: the sum over its 2 weights
    >>> s = t.update(params, s, step=jnp.asarray(0), grads=g)
    >>> [round(float(v), 3) for v in s["layers"]["w"]["centroids"]]
    [-1.95, 0.05]

References:
    Han, Mao, Dally. "Deep Compression: Compressing Deep Neural Networks with
    Pruning, Trained Quantization and Huffman Coding", ICLR 2016.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxcomp.core import paths as _paths
from jaxcomp.core.errors import ConfigError, check_choice
from jaxcomp.core.select import Where, select
from jaxcomp.core.transform import Transform
from jaxcomp.quant.kmeans import INITS, check_k, kmeans1d, reconstruct

SUPPORTED_BITS = tuple(range(1, 9))


def bits_to_k(bits: Any, what: str = "sharing.bits") -> int:
    """``2 ** bits`` clusters, for ``bits`` in :data:`SUPPORTED_BITS` (1..8)."""
    check_choice(what, bits, SUPPORTED_BITS)
    return 2 ** int(bits)


def _resolve_k(bits, k, n, path) -> int:
    if (bits is None) == (k is None):
        raise ConfigError(f"sharing: give exactly one of bits= or k=; got bits={bits!r}, k={k!r}")
    kk = bits_to_k(bits) if k is None else k
    return check_k(kk, n, what=f"sharing.k[{path}]")


def weight_sharing(*, bits: int | None = None, k: int | None = None, init: str = "linear",
                   where: Where = None, iters: int = 20, key: jax.Array | None = None,
                   learning_rate: float = 1e-3,
                   optimizer: optax.GradientTransformation | None = None) -> Transform:
    """Per-layer k-means weight sharing with centroid fine-tuning.

    Args:
      bits: index bits per weight (``k = 2 ** bits``), one of 1..8; or
      k: the number of clusters per layer directly (``2 <= k <= layer size``).
      init: centroid initialization, ``"linear"`` | ``"random"`` | ``"density"``.
      where: which leaves to share (default: floating leaves with ``ndim >= 2``).
      iters: k-means (Lloyd) iterations.
      key: random key, required for ``init="random"`` (split per layer).
      learning_rate: the centroid SGD learning rate (an array in the state, so
        it can be ``vmap``-ed); ignored when ``optimizer`` is given.
      optimizer: an optax optimizer for the centroids (default: SGD).

    Returns:
      A :class:`~jaxcomp.core.Transform` with state
      ``{"layers": {path: {"centroids", "index"}}, "lr", "opt_state"}``.

    Raises:
      ConfigError: bits outside 1..8, ``k`` outside ``[2, size]``, an unknown
        ``init``, a missing key for random init, or a bad ``where``.
    """
    check_choice("sharing.init", init, INITS)
    if bits is not None:
        bits_to_k(bits)
    if init == "random" and key is None:
        raise ConfigError("sharing.key: init='random' needs an explicit jax.random key; got None")
    if not isinstance(iters, int) or iters < 0:
        raise ConfigError(f"sharing.iters: got {iters!r}; allowed: an integer >= 0")
    custom_opt = optimizer is not None

    def layer_plan(params):
        sel = select(params, where)
        flat = _paths.flatten(params)
        plan = {p: _resolve_k(bits, k, int(x.size), p) for p, x in flat if sel[p]}
        return plan

    def init_fn(params):
        plan = layer_plan(params)
        leaves = _paths.path_dict(params)
        keys = (list(jax.random.split(key, len(plan))) if key is not None
                else [None] * len(plan))
        layers = {}
        for (path, kk), kkey in zip(plan.items(), keys, strict=True):
            x = leaves[path]
            c, idx = kmeans1d(x, x != 0, k=kk, init=init, iters=iters, key=kkey)
            layers[path] = {"centroids": c, "index": idx}
        lr = jnp.asarray(learning_rate, jnp.float32)
        opt = _optimizer(lr)
        return {"layers": layers, "lr": lr, "opt_state": opt.init(_centroids(layers))}

    def _optimizer(lr):
        return optimizer if custom_opt else optax.sgd(lr)

    def apply_fn(params, state):
        layers = state["layers"]

        def leaf(path, x):
            if path not in layers:
                return x
            return _shared_ste(layers[path]["centroids"], layers[path]["index"], x)

        return _paths.map_with_path(leaf, params)

    def update_fn(params, state, *, step, grads=None, key=None):
        del params, step, key
        if grads is None:
            return state
        layers = state["layers"]
        g = _paths.path_dict(grads)
        cgrads = {}
        for path, lay in layers.items():
            cgrads[path] = cluster_grads(g[path], lay["index"], lay["centroids"])
        opt = _optimizer(state["lr"])
        cent = _centroids(layers)
        upd, opt_state = opt.update(cgrads, state["opt_state"], cent)
        cent = optax.apply_updates(cent, upd)
        new_layers = {p: {"centroids": cent[p].astype(lay["centroids"].dtype),
                          "index": lay["index"]} for p, lay in layers.items()}
        return {"layers": new_layers, "lr": state["lr"], "opt_state": opt_state}

    return Transform(init_fn, apply_fn, update_fn)


@jax.jit
def _shared_ste(centroids: jax.Array, index: jax.Array, x: jax.Array) -> jax.Array:
    # Value: exactly the shared weight. Gradient: straight through to x.
    # (Jitted so eager calls run one program, not one per primitive.)
    shared = reconstruct(centroids, index).astype(x.dtype)
    return shared + (x - jax.lax.stop_gradient(x))


@jax.jit
def cluster_grads(grads: jax.Array, index: jax.Array, centroids: jax.Array) -> jax.Array:
    """Each centroid's gradient: the sum of the gradients of the weights sharing it."""
    k = centroids.shape[0]
    idx = index.ravel()
    gi = jnp.where(idx >= 0, grads.ravel().astype(centroids.dtype), 0)
    return jax.ops.segment_sum(gi, jnp.clip(idx, 0, k - 1), num_segments=k)


def _centroids(layers: dict) -> dict:
    return {p: lay["centroids"] for p, lay in layers.items()}


def shared_params(params: Any, state: Any) -> Any:
    """The params with every shared leaf replaced by ``centroids[index]`` (no STE)."""
    layers = state["layers"]
    return _paths.map_with_path(
        lambda p, x: reconstruct(layers[p]["centroids"], layers[p]["index"]).astype(x.dtype)
        if p in layers else x, params)


def codebooks(state: Any) -> dict[str, tuple[jax.Array, jax.Array]]:
    """``{path: (centroids, index)}`` from a weight-sharing state (for encoding)."""
    return {p: (lay["centroids"], lay["index"]) for p, lay in state["layers"].items()}
