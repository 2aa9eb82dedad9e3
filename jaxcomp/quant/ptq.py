"""Post-training quantization: fold BatchNorm, quantize weights, calibrate
activation ranges on N batches, and return a model ready to evaluate or export.

Example:
    >>> import jax, optax
    >>> from jaxcomp.data import synthetic
    >>> from jaxcomp.models import get_model
    >>> from jaxcomp.train import fit, evaluate
    >>> from jaxcomp.quant.ptq import ptq
    >>> ds = synthetic(num_train=256, num_test=128, shape=(6,), num_classes=3)
    >>> model = get_model("mlp", input_shape=(6,), num_classes=3, features=(16,))
    >>> st = fit(model, ds, optax.adam(1e-2), epochs=2, batch_size=32, progress=False).state
    >>> q = ptq(model, st.params, st.model_state, [ds.x_train[:128]], bits=8, act_bits=8)
    >>> acc = evaluate(q.model, q.params, q.model_state, ds.x_test, ds.y_test)["accuracy"]
    >>> 0.0 <= acc <= 1.0
    True
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from jaxcomp.core import paths as _paths
from jaxcomp.core.select import Where
from jaxcomp.flax.model import Model
from jaxcomp.flax.modules import batch_stats
from jaxcomp.quant.act import ActQuant, act_quant
from jaxcomp.quant.bnfold import fold_batchnorm
from jaxcomp.quant.observers import require_batches
from jaxcomp.quant.transform import weight_quant


class PTQResult(NamedTuple):
    """A quantized model: evaluate ``model.apply(params, model_state, x)``.

    ``float_params`` are the (BN-folded) float weights — what export takes;
    ``params`` are their fake-quantized values; ``act`` is the
    :class:`ActQuant` wrapper (or ``None`` without activation quantization);
    ``base`` is the (folded) float model that integer inference wraps.
    """

    model: Model
    params: Any
    model_state: Any
    float_params: Any
    base: Model
    act: ActQuant | None


def layer_paths(params: Any) -> list[str]:
    """Module paths that own a ``kernel`` (Dense/Conv layers), in leaf order."""
    return [p.rsplit("/", 1)[0] for p in _paths.all_paths(params)
            if p.endswith("/kernel")]


def layer_rules(params: Any, bits: int, *, keep_8bit: Sequence[str] = ()) -> list[tuple]:
    """Activation rules quantizing every layer's input (``keep_8bit`` layers at 8 bits)."""
    return [(re.escape(p), 8 if p in keep_8bit else bits) for p in layer_paths(params)]


def ptq(model: Model, params: Any, model_state: Any, calib: Iterable[Any], *,
        bits: Any = 8, act_bits: int = 0, per_channel: bool = True, symmetric: bool = True,
        observer: str = "minmax", weight_observer: str = "minmax", where: Where = None,
        act_rules: Sequence[Any] | None = None, act_symmetric: bool = False,
        fold_bn: bool = True, weight_params: Any = None) -> PTQResult:
    """Post-training quantization of a trained linen or NNX model.

    Args:
      model, params, model_state: the trained float model.
      calib: calibration input batches (``x`` arrays); at least one when
        ``act_bits > 0``.
      bits: weight bits (or ``(pattern, bits)`` rules); act_bits: 0 = float activations.
      per_channel, symmetric, weight_observer, where: weight quantization
        (see :func:`~jaxcomp.quant.weight_quant`).
      observer: activation range observer (minmax, ema, percentile, mse).
      act_rules: module rules for activation quantization (default: every layer).
      fold_bn: fold BatchNorm into the preceding layers first, whenever the model
        state holds BatchNorm statistics (with or without activation quantization);
        a BatchNorm not fed directly by a Conv/Dense is then an error.
      weight_params: already-quantized weights (e.g. from AdaRound) to use
        instead of round-to-nearest.
    """
    calib = list(calib)
    fold = fold_bn and bool(batch_stats(model_state))  # linen batch_stats or NNX BatchStat
    if act_bits or fold:
        require_batches(len(calib))
    base = model
    if fold:
        f = fold_batchnorm(model, params, model_state, calib[0] if calib else None)
        base, params, model_state = f.model, f.params, {}
    if weight_params is None:
        t = weight_quant(bits, where=where, per_channel=per_channel, symmetric=symmetric,
                         observer=weight_observer)
        qparams = t.apply(params, t.init(params))
    else:
        qparams = weight_params
    if not act_bits:
        return PTQResult(base, qparams, model_state, params, base, None)
    require_batches(len(calib))
    rules = act_rules if act_rules is not None else layer_rules(params, act_bits)
    aq = act_quant(base, rules, act_bits, symmetric=act_symmetric)
    import jax

    _, ms = aq.model.init(jax.random.key(0), calib[0] if calib else None)
    ms = {**ms, **{k: v for k, v in (model_state or {}).items()}}
    ms = aq.calibrate(params, ms, calib, observer=observer)
    return PTQResult(aq.model, qparams, ms, params, base, aq)
