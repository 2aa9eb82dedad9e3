"""The per-leaf report's FLOPs: 2 × weights × output positions, for linen and NNX
convolutions alike, and "after" counting only the non-zero weights."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcomp.models import get_model
from jaxcomp.prune.report import sparsity_report


@pytest.mark.parametrize("name,conv_paths", [
    ("lenet5", {"Conv_0/kernel": 28 * 28}),               # 'SAME' 5×5 conv on 28×28
    ("nnx_cnn", {"stem/kernel": 28 * 28, "conv1/kernel": 28 * 28}),
])
def test_conv_flops_count_output_positions(name, conv_paths):
    m = get_model(name, input_shape=(28, 28, 1), num_classes=10)
    params, state = m.init(jax.random.key(0), jnp.ones((1, 28, 28, 1)))
    rows = {r["path"]: r for r in sparsity_report(params, model=m, model_state=state,
                                                   input_shape=(28, 28, 1))}
    for path, positions in conv_paths.items():
        n = int(np.prod(rows[path]["shape"]))
        assert rows[path]["flops_before"] == 2 * n * positions, path
    dense = [p for p in rows if p != "total" and len(rows[p]["shape"]) == 2]
    assert dense and all(rows[p]["flops_before"] == 2 * rows[p]["params"] for p in dense)
    assert rows["total"]["flops_before"] == sum(r["flops_before"] for p, r in rows.items()
                                                if p != "total")


def test_flops_after_counts_nonzeros():
    kernel = np.zeros((3, 3, 1, 4), np.float32)
    kernel[0, 0, 0, :3] = 1.0  # 3 non-zeros of 36
    rows = sparsity_report({"Conv_0": {"kernel": kernel}})
    assert (rows[0]["nonzeros"], rows[0]["flops_after"]) == (3, 6)  # no model: 1 position
    assert rows[0]["sparsity"] == pytest.approx(1 - 3 / 36)
