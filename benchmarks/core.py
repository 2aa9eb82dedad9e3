"""Core benchmark: the cost of the Transform abstraction in a train step.

``identity_transform_step_ratio``: LeNet-300-100, batch 128, Adam; the jitted
train step with ``jc.identity()`` versus the same step with no transform.
Target ≤ 1.02. Run: ``python benchmarks/core.py``.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from harness import emit, interleaved  # noqa: E402

import jaxcomp as jc  # noqa: E402
from jaxcomp.models import get_model  # noqa: E402
from jaxcomp.train import create_state, make_train_step  # noqa: E402

STEPS = 200


def main() -> None:
    model = get_model("lenet300", input_shape=(28, 28, 1))
    tx = optax.adam(1e-3)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.random((128, 28, 28, 1), np.float32))
    y = jnp.asarray(rng.integers(0, 10, 128).astype(np.int32))
    batch = {"x": x, "y": y}
    params, ms = model.init(jax.random.key(0), x[:1])
    states, steps = {}, {}
    for name, t in (("plain", None), ("identity", jc.identity())):
        steps[name] = make_train_step(model, tx, t)
        p = jax.tree.map(jnp.copy, params)  # the step donates its input buffers
        states[name] = create_state(p, ms, tx, key=jax.random.key(1), transform=t)
        states[name], m = steps[name](states[name], batch)  # compile
        m["loss"].block_until_ready()

    def runner(name):
        def run():
            s = states[name]
            for _ in range(STEPS):
                s, m = steps[name](s, batch)
            m["loss"].block_until_ready()
            states[name] = s
        return run

    hlo = {k: steps[k].lower(states[k], batch).compile().as_text() for k in steps}
    t = interleaved({k: runner(k) for k in steps}, repeats=9)
    ratio = t["identity"]["wall"] / t["plain"]["wall"]
    emit("identity_transform_step_ratio", round(ratio, 4), "ratio", 1.02,
         cpu_ratio=round(t["identity"]["cpu"] / t["plain"]["cpu"], 4),
         plain_step_ms=round(1e3 * t["plain"]["wall"] / STEPS, 4),
         same_compiled_hlo=_strip_names(hlo["plain"]) == _strip_names(hlo["identity"]))


def _strip_names(text: str) -> str:
    """Compiled HLO without module/metadata names, to compare two programs."""
    import re

    text = re.sub(r"metadata=\{[^}]*\}", "", text)
    return re.sub(r"HloModule \S+", "HloModule", text)


if __name__ == "__main__":
    main()
