"""How the sweep runner groups settings: the vector keys, the group key (the config
without them), and the fingerprints that tell settings with identical states apart.

Example:
    >>> from jaxcomp.experiment import base_config
    >>> a, b = base_config(), base_config()
    >>> b.seed = 7
    >>> group_key(a, vector_keys()) == group_key(b, vector_keys())
    True
"""

from __future__ import annotations

import hashlib
from typing import Any

import jax
import ml_collections
import numpy as np

from jaxcomp.experiment import families
from jaxcomp.experiment.plan import static_part
from jaxcomp.experiment.run import RunContext
from jaxcomp.sweep.grid import config_hash

SCAN_MODELS = ("mlp", "lenet300", "nnx_mlp")


def vector_keys() -> set[str]:
    """``seed``, ``train.learning_rate`` (held in the optimizer state, see
    :func:`jaxcomp.experiment.run.make_optimizer`) and every available family's
    ``VECTOR_KEYS`` as dotted config keys."""
    out = {"seed", "train.learning_rate"}
    for name, fam in families.available().items():
        for k in getattr(fam, "VECTOR_KEYS", ()):
            out.add(k if k.startswith(name + ".") else f"{name}.{k}")
    return out


def group_key(cfg: ml_collections.ConfigDict, vkeys: set[str]) -> str:
    """Settings with equal group keys can share one compiled program: the config without
    the vector keys, i.e. the engine's static part and every family's default static
    part (:func:`jaxcomp.experiment.plan.static_part`); :func:`plans_key` then compares
    the static parts the plans declare."""
    keys = set(vkeys)
    if cfg.data.val_fraction:  # the validation split depends on the seed
        keys.discard("seed")
    return config_hash(static_part(cfg, sorted(keys)))


def plans_key(ctx: RunContext) -> str:
    """The static parts of a setting's plans (family by family): settings of one
    vectorized program have equal plans keys."""
    return config_hash([(p.family, p.static) for p in ctx.plans])


def mesh_free(cfg: ml_collections.ConfigDict) -> dict[str, Any]:
    """The config as a dict without its ``mesh`` block (results do not depend on it)."""
    d = cfg.to_dict()
    d.pop("mesh", None)
    return d


def get_dotted(d: dict[str, Any], dotted: str) -> Any:
    """``d[a][b]`` for ``"a.b"``, or ``None`` where a key is missing.

    Example:
        >>> get_dotted({"prune": {"sparsity": 0.9}}, "prune.sparsity"), get_dotted({}, "a.b")
        (0.9, None)
    """
    for p in dotted.split("."):
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def fingerprint(tree: Any) -> str:
    """A SHA-256 of every leaf's bytes (typed PRNG keys as their data).

    Example:
        >>> import numpy as np
        >>> fingerprint({"w": np.ones(2)}) == fingerprint({"v": np.ones(2)})
        True
    """
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(tree):
        if jax.dtypes.issubdtype(getattr(leaf, "dtype", np.float32), jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        h.update(np.asarray(leaf).tobytes())
    return h.hexdigest()


def one_step_fingerprint(ctx: RunContext, state: Any) -> str:
    """A fingerprint of one train step of ``ctx``'s functions from ``state`` on the
    first batch (to tell settings whose numbers are baked into code apart)."""
    from jaxcomp.train.step import train_step_fn

    cfg = ctx.config
    step = jax.jit(train_step_fn(ctx.model, ctx.make_optimizer(), ctx.transform, ctx.loss_fn))
    idx = np.arange(cfg.train.batch_size)
    batch = {"x": ctx.dataset.x_train[idx], "y": ctx.dataset.y_train[idx]}
    batch.update({k: np.asarray(v)[idx] for k, v in (ctx.cached or {}).items()})
    if ctx.loss_state is not None:
        batch["loss_state"] = ctx.loss_state
    new, metrics = step(state, batch)
    return fingerprint((new.params, new.opt_state, new.comp_state, metrics))


def tree_signature(tree: Any) -> str:
    """The tree structure with every leaf's shape and dtype (not its values).

    Example:
        >>> import numpy as np
        >>> tree_signature({"w": np.ones(2)}) == tree_signature({"w": np.zeros(2)})
        True
    """
    leaves, treedef = jax.tree.flatten(tree)
    return str(treedef) + str([(np.shape(x), str(getattr(x, "dtype", type(x))))
                               for x in leaves])
