"""BatchNorm folding: folded BN-free model == original in eval mode (ResCNN, DSCNN)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcomp.core.errors import ConfigError
from jaxcomp.models import get_model
from jaxcomp.quant.bnfold import fold_batchnorm
from jaxcomp.quant.transform import fake_quant_params


def _random_stats(ms, seed):
    """Non-trivial running statistics (fresh ones are mean 0, var 1)."""
    flat, tdef = jax.tree_util.tree_flatten_with_path(ms["batch_stats"])
    keys = jax.random.split(jax.random.key(seed), len(flat))
    new = [jax.random.uniform(k, x.shape, minval=0.3, maxval=2.0) if p[-1].key == "var"
           else 0.2 * jax.random.normal(k, x.shape) for k, (p, x) in zip(keys, flat, strict=True)]
    return {"batch_stats": jax.tree.unflatten(tdef, new)}


def _random_bn_params(params, seed):
    def f(path, x):
        names = [str(getattr(p, "key", p)) for p in path]
        if any("bn" in n for n in names):
            return x + 0.3 * jax.random.normal(jax.random.key(seed + len(names)), x.shape)
        return x
    return jax.tree_util.tree_map_with_path(f, params)


@pytest.mark.parametrize("name,kw,use_jit", [("rescnn", {"channels": (4, 8)}, False),
                                             ("dscnn", {"channels": (4, 8)}, True),
                                             ("dscnn", {"channels": (4, 8)}, False)])
def test_folded_equals_eval_mode(name, kw, use_jit):
    model = get_model(name, input_shape=(8, 8, 1), num_classes=5, **kw)
    x = jax.random.normal(jax.random.key(1), (4, 8, 8, 1))
    params, ms = model.init(jax.random.key(0), x)
    params, ms = _random_bn_params(params, 3), _random_stats(ms, 2)
    f = fold_batchnorm(model, params, ms, x)
    n_bn = sum(1 for p in jax.tree_util.tree_flatten_with_path(ms["batch_stats"])[0]
               if str(p[0][-1].key) == "mean")
    assert len(f.pairs) == n_bn
    apply = jax.jit(f.model.apply) if use_jit else f.model.apply
    ref, _ = model.apply(params, ms, x, train=False)
    out, _ = apply(f.params, {}, x)
    np.testing.assert_allclose(out, ref, atol=1e-5, rtol=1e-5)
    flat = jax.tree_util.tree_flatten_with_path(f.params)[0]
    assert not any("bn" in str(p) for p, _ in flat)
    # the folded kernels are what weight quantization sees
    q = fake_quant_params(f.params, 8)
    out_q, _ = f.model.apply(q, {}, x)
    assert float(jnp.max(jnp.abs(ref))) > 0
    assert float(jnp.max(jnp.abs(out_q - ref))) < 0.1 * float(jnp.max(jnp.abs(ref)))


def test_no_batchnorm_is_an_error():
    model = get_model("mlp", input_shape=(6,), features=(4,))
    x = jnp.ones((1, 6))
    params, ms = model.init(jax.random.key(0), x)
    with pytest.raises(ConfigError, match="no BatchNorm"):
        fold_batchnorm(model, params, ms, x)
