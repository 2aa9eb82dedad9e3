"""Integer inference: Dense and Conv computed on integer codes with int32
accumulation, then rescaled ("requantized") to float for the next layer.

:func:`int_model` wraps a linen or NNX :class:`~jaxcomp.flax.Model` (or a
BN-folded one): every Dense / Conv (``nn.Dense``, ``nn.Conv``, ``nnx.Linear``,
``nnx.Conv``) whose kernel was exported by
:func:`~jaxcomp.quant.export.export_int` is replaced, through the interception
adapter, by

1. quantize the input with its calibrated activation range
   (``q_x = clip(round(x / s_x + z_x))`` as int8),
2. ``lax.dot_general`` / ``lax.conv_general_dilated`` of int8 codes with
   ``preferred_element_type=int32`` (convolutions are padded with ``z_x``,
   the code of 0.0, so padding stays exact),
3. subtract the zero-point term ``z_x · Σ q_w`` and rescale by ``s_x · s_w``,
   then add the float bias.

The activation ranges come from :class:`~jaxcomp.quant.act.ActQuant` (its
model state ``"act_quant"``), so the integer model computes what the
fake-quant model simulates.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxcomp.models import get_model
    >>> from jaxcomp.quant.act import act_quant
    >>> from jaxcomp.quant.export import export_int
    >>> from jaxcomp.quant.intinfer import int_model
    >>> from jaxcomp.quant.transform import fake_quant_params
    >>> base = get_model("mlp", input_shape=(6,), num_classes=3, features=(8,))
    >>> aq = act_quant(base, ["Dense_.*"])
    >>> x = jax.random.normal(jax.random.key(1), (32, 6))
    >>> params, ms = aq.model.init(jax.random.key(0), x)
    >>> ms = aq.calibrate(params, ms, [x])
    >>> imodel = int_model(base, export_int(params, 8), ms["act_quant"])
    >>> y_int, _ = imodel.apply(None, {}, x)
    >>> y_fq, _ = aq.model.apply(fake_quant_params(params, 8), ms, x)
    >>> bool(jnp.allclose(y_int, y_fq, atol=1e-4))
    True
"""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcomp.core import paths as _paths
from jaxcomp.core.errors import ConfigError
from jaxcomp.flax.intercept import intercept
from jaxcomp.flax.model import Model
from jaxcomp.flax.modules import conv_config, layer_kind
from jaxcomp.quant.export import codes, dequantize_tree, is_qleaf
from jaxcomp.quant.uniform import qparams, qrange


def _layers(qtree: Any) -> dict[str, dict[str, Any]]:
    """``{module_path: {"kernel": qleaf, "bias": array?}}`` for exported kernels."""
    out: dict[str, dict[str, Any]] = {}

    def walk(node, prefix):
        for k, v in node.items():
            p = f"{prefix}/{k}" if prefix else k
            if k == "kernel" and is_qleaf(v):
                out[prefix] = {"kernel": v, "bias": node.get("bias")}
            elif isinstance(v, dict) and not is_qleaf(v):
                walk(v, p)

    walk(qtree, "")
    return out


def _pads(padding: Any, x_shape, k_shape, strides, dil) -> list[tuple[int, int]]:
    if isinstance(padding, str):
        eff = [(k - 1) * d + 1 for k, d in zip(k_shape[:-2], dil, strict=True)]
        return jax.lax.padtype_to_pads(x_shape[1:-1], eff, strides, padding)
    if isinstance(padding, int):
        return [(padding, padding)] * (len(k_shape) - 2)
    return [tuple(p) if not isinstance(p, int) else (p, p) for p in padding]


def int_dense(qx: jax.Array, qw: jax.Array) -> jax.Array:
    """int8 ``x @ w`` with int32 accumulation."""
    return jax.lax.dot_general(qx, qw, (((qx.ndim - 1,), (0,)), ((), ())),
                               preferred_element_type=jnp.int32)


def int_model(model: Model, qtree: Any, act_state: dict[str, Any], *,
              symmetric_act: bool = False, signed_act: bool = True) -> Model:
    """A :class:`Model` that runs ``model`` with integer Dense/Conv layers.

    Args:
      model: the linen or NNX model (or a folded model from :func:`fold_batchnorm`).
      qtree: the exported tree from :func:`export_int` (its kernels are used;
        float leaves such as biases are passed to the model as params).
      act_state: ``{path: {"lo", "hi", "bits", ...}}`` — the ``"act_quant"``
        model state of a calibrated :class:`~jaxcomp.quant.act.ActQuant`.
      symmetric_act, signed_act: the activation scheme used in calibration.

    The returned model's ``init`` returns the integer weights
    ``{path: {"q", "scale", "qsum"}}``; ``apply(weights, model_state, x)`` uses
    them (``None``: the exported ones, baked into a jitted program as constants).
    """
    layers = _layers(qtree)
    missing = [p for p in layers if p not in act_state]
    if missing:
        raise ConfigError(f"int_model: no activation range for layers {missing}; calibrate "
                          f"act_quant with rules that match them (have {sorted(act_state)})")
    weights = {}
    for p, v in layers.items():
        q = np.asarray(codes({k: np.asarray(a) for k, a in v["kernel"].items()}), np.int8)
        weights[p] = {"q": q, "scale": np.asarray(v["kernel"]["scale"], np.float32),
                      # Σ q_w over the contraction axes, for the zero-point term (precomputed
                      # here: XLA would otherwise constant-fold it slowly under jit)
                      "qsum": q.astype(np.int32).sum(axis=tuple(range(q.ndim - 1)))}
    if any("zero_point" in v["kernel"]
           for v in layers.values()):
        raise ConfigError("int_model: weights must be exported with symmetric=True")
    float_params = dequantize_tree(qtree)  # biases (and placeholders for kernels)
    acts = {p: act_state[p] for p in layers}
    biases = {p: None if v["bias"] is None else np.asarray(v["bias"], np.float32)
              for p, v in layers.items()}

    def hook(path, module, args, kwargs, call_next):
        x = args[0].astype(jnp.float32)
        a = acts[path]
        w = current["weights"][path]
        s_x, z_x = qparams(a["lo"], a["hi"], a["bits"], symmetric=symmetric_act,
                           signed=signed_act)
        qmin, qmax = qrange(a["bits"], signed=signed_act, symmetric=symmetric_act)
        qx = jnp.clip(jnp.round(x / s_x + z_x), qmin, qmax).astype(jnp.int8)
        qw = w["q"]
        zx = z_x.astype(jnp.int32)
        kind = layer_kind(module)
        if kind == "dense":
            acc = int_dense(qx, qw)
            acc = acc - zx * w["qsum"]
            s_w = w["scale"].reshape(-1)
        elif kind == "conv":
            cfg = conv_config(module)
            pads = _pads(cfg["padding"], x.shape, qw.shape, cfg["strides"], cfg["dilation"])
            qxp = jnp.pad(qx, [(0, 0), *pads, (0, 0)], constant_values=zx.astype(jnp.int8))
            acc = jax.lax.conv_general_dilated(
                qxp, qw, cfg["strides"], "VALID", rhs_dilation=cfg["dilation"],
                dimension_numbers=jax.lax.conv_dimension_numbers(
                    qxp.shape, qw.shape, ("NHWC", "HWIO", "NHWC")),
                feature_group_count=cfg["groups"],
                preferred_element_type=jnp.int32)
            acc = acc - zx * w["qsum"]
            s_w = w["scale"].reshape(-1)
        else:
            raise ConfigError(f"int_model: {path} is a {type(module).__name__}; only Dense and "
                              "Conv layers have an integer path")
        out = acc.astype(jnp.float32) * (s_x * s_w)
        # the exported bias, also a folded BatchNorm's (this hook replaces the whole call)
        if biases[path] is not None:
            out = out + biases[path]
        return out

    current: dict[str, Any] = {}

    def apply(params, model_state, x, *, train: bool = False, rng=None):
        del train
        # params: the integer weights from init() (pass them to jit so they are not
        # baked in as constants), or None for the exported ones
        current["weights"] = weights if params is None else params
        with intercept([re.escape(p) for p in sorted(layers)], hook, what="int_model layers"):
            return model.apply(float_params, model_state or {}, x, train=False, rng=rng)

    return Model(lambda key, x: (weights, {}), apply, f"{model.name}+int", model.module)


def exported_paths(qtree: Any) -> list[str]:
    """Module paths whose kernels are exported."""
    return sorted(_layers(qtree))


def leaf_paths(qtree: Any) -> list[str]:
    """All leaf paths of an exported tree (for inspection)."""
    return _paths.all_paths(qtree)
