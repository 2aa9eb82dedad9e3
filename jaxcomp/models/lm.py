"""Language-model training and evaluation for the byte GPT: loss, bits per byte, a loop.

:func:`lm_loss` is a ``loss_fn`` for :func:`jaxcomp.train.train_step_fn` on
``(B, T, 256)`` logits with next-byte targets ``batch["y"]`` ``(B, T)``.
:func:`train_lm` runs chunks of steps as the engine's one epoch body
(:class:`jaxcomp.engine.Programs`, ``lax.scan`` over ready batches cut by
:meth:`jaxcomp.data.text.TextData.batches`) and evaluates valid bits per byte
between chunks; :func:`bits_per_byte` is mean next-byte cross-entropy / ln 2
over non-overlapping valid windows.

Example:
    >>> import optax
    >>> from jaxcomp.data.text import TextData
    >>> from jaxcomp.models import get_model
    >>> data = TextData.from_bytes(b"hello world. " * 200)
    >>> model = get_model("gpt", input_shape=(16,), num_layers=1, width=32, num_heads=2)
    >>> state, hist = train_lm(model, data, optax.adam(3e-3), steps=20, batch_size=8,
    ...                        context=16, seed=0, eval_every=10)
    >>> [h["step"] for h in hist], hist[-1]["valid_bpb"] < 8.0
    ([10, 20], True)
"""

from __future__ import annotations

import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcomp.core.errors import ConfigError
from jaxcomp.data.text import TextData
from jaxcomp.flax.model import Model
from jaxcomp.train.state import TrainState, create_state

LN2 = math.log(2.0)


def token_nll(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Per-position negative log-likelihood (nats) of ``targets`` under ``logits``."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]


def lm_loss(logits: jax.Array, batch: dict[str, jax.Array]) -> tuple[jax.Array, dict]:
    """Mean next-byte cross-entropy (nats) of ``(B, T, V)`` logits against ``batch["y"]``
    ``(B, T)``; also reports it in bits per byte.

    Example:
        >>> import jax.numpy as jnp
        >>> loss, aux = lm_loss(jnp.zeros((1, 2, 256)), {"y": jnp.array([[3, 4]])})
        >>> round(float(aux["bpb"]), 6)
        8.0
    """
    loss = jnp.mean(token_nll(logits, batch["y"]))
    return loss, {"bpb": loss / LN2}


def _nll_sums(model: Model, params, model_state, x, y, w):
    logits, _ = model.apply(params, model_state, x, train=False)
    return token_nll(logits, y) * w[:, None]  # summed on the host in float64


_nll_sums_jit = jax.jit(_nll_sums, static_argnums=(0,))


def bits_per_byte(model: Model, params: Any, model_state: Any, data: TextData | dict, *,
                  context: int, batch_size: int = 32, split: str = "valid",
                  max_windows: int | None = None) -> float:
    """Mean next-byte cross-entropy / ln 2 over non-overlapping ``context`` windows of
    ``data``'s ``split`` (or over given ``{"x", "y"}`` windows). The last partial batch
    is padded with zero-weight windows, so the per-batch loss compiles once."""
    win = data if isinstance(data, dict) else data.eval_windows(context, split, max_windows)
    x, y = np.asarray(win["x"]), np.asarray(win["y"])
    n = len(x)
    if n == 0:
        raise ConfigError(f"bits_per_byte: no evaluation window of context={context}")
    if batch_size < 1:
        raise ConfigError(f"bits_per_byte: batch_size={batch_size}; must be >= 1")
    bs = min(batch_size, n)
    total, count = 0.0, 0.0
    for i in range(0, n, bs):
        xb, yb = x[i:i + bs], y[i:i + bs]
        w = np.ones(bs, np.float32)
        if len(xb) < bs:
            pad = bs - len(xb)
            w[bs - pad:] = 0.0
            xb = np.concatenate([xb, np.zeros((pad, xb.shape[1]), xb.dtype)])
            yb = np.concatenate([yb, np.zeros((pad, yb.shape[1]), yb.dtype)])
        total += float(np.sum(np.asarray(_nll_sums_jit(model, params, model_state, xb, yb, w),
                                         np.float64)))
        count += float(w.sum()) * xb.shape[1]
    return total / count / LN2


def init_lm_state(model: Model, tx: optax.GradientTransformation, *, seed: int,
                  transform: Any = None) -> TrainState:
    """A :class:`TrainState` for ``model``: params from ``key(seed)``."""
    params, ms = model.init(jax.random.key(seed), None)
    return create_state(params, ms, tx, key=jax.random.key(seed + 1), transform=transform)


def train_lm(model: Model, data: TextData, tx: optax.GradientTransformation, *, steps: int,
             batch_size: int, context: int, seed: int = 0, eval_every: int | None = None,
             state: TrainState | None = None, transform: Any = None,
             eval_batch_size: int = 64, max_eval_windows: int | None = None,
             loss_fn: Any = None, loss_state: Any = None, train_model: Model | None = None
             ) -> tuple[TrainState, list[dict[str, float]]]:
    """Train ``model`` on random ``context``-byte windows of ``data.train``.

    Steps run in chunks of ``eval_every`` (default: all ``steps`` in one chunk) as one
    scanned program of the engine (:class:`jaxcomp.engine.Programs`, batches ready in
    ``(chunk, B, T)`` arrays, the batch of step ``s`` a function of ``(seed, s)``);
    after each chunk the valid bits per byte is measured.

    Returns ``(state, history)``; each history row has ``step``, ``train_loss`` (nats,
    mean over the chunk), ``train_bpb`` (the loss's ``bpb`` metric when it reports one),
    ``train_<metric>`` for the loss's other metrics, ``valid_bpb``, ``tokens_per_s`` (train tokens
    per second of the chunk, the first chunk's compile included) and ``seconds``.
    A given ``state`` continues from its step (the data stream continues too).

    ``loss_fn(outputs, batch)`` replaces :func:`lm_loss`; ``loss_state`` (a pytree of
    arrays, e.g. a teacher's params) reaches it as ``batch["loss_state"]`` as a traced
    argument of the compiled chunk; ``train_model`` (same params as ``model``) is the
    model the step differentiates when its outputs are more than logits (e.g.
    :func:`jaxcomp.distill.lm.with_hidden_states`) — ``model`` is still the one evaluated.
    """
    from jaxcomp.engine.programs import Programs

    if not isinstance(steps, int) or steps < 0:
        raise ConfigError(f"train.steps: got {steps!r}; must be an integer >= 0")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"train.batch_size: got {batch_size!r}; must be an integer >= 1")
    chunk = eval_every or max(steps, 1)
    if not isinstance(chunk, int) or chunk < 1:
        raise ConfigError(f"train.eval_every: got {eval_every!r}; must be an integer >= 1")
    progs = Programs(train_model or model, tx, batch_size=batch_size, transform=transform,
                     loss_fn=loss_fn or lm_loss)
    if state is None:
        state = init_lm_state(model, tx, seed=seed, transform=transform)
    else:
        from jaxcomp.train.state import projected

        state = projected(state, transform)
    history: list[dict[str, float]] = []
    done = 0
    first = int(state.step)
    while done < steps:
        k = min(chunk, steps - done)
        batches = data.batches(seed, first + done, k, batch_size, context)
        t0 = time.perf_counter()
        state, metrics = progs.epoch(state, batches, None, loss_state)
        loss = float(metrics["loss"])  # waits for the chunk
        dt = time.perf_counter() - t0
        done += k
        eff = state.params if transform is None else transform.apply(state.params,
                                                                     state.comp_state)
        bpb = bits_per_byte(model, eff, state.model_state, data, context=context,
                            batch_size=eval_batch_size, max_windows=max_eval_windows)
        row = {"step": first + done, "train_loss": loss,
               "train_bpb": float(metrics.get("bpb", loss / LN2)), "valid_bpb": bpb,
               "tokens_per_s": k * batch_size * context / dt, "seconds": dt}
        row.update({f"train_{n}": float(v) for n, v in metrics.items()
                    if f"train_{n}" not in row and n != "loss"})
        history.append(row)
    return state, history


__all__ = ["LN2", "bits_per_byte", "init_lm_state", "lm_loss", "token_nll", "train_lm"]
