"""The one Checkpointer in its mesh (gather) mode: round trip of any pytree (keys
included), newest-only retention, checksums, and clear errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcomp.core.errors import ConfigError
from jaxcomp.train.checkpoint import Checkpointer


def _state(scale=1.0):
    return {"w": jnp.arange(6.0).reshape(2, 3) * scale, "step": jnp.int32(4),
            "key": jax.random.key(3)}


@pytest.mark.parametrize("gather", [False, True])
def test_round_trip_and_retention(tmp_path, gather):
    ck = Checkpointer(str(tmp_path), max_to_keep=2, gather=gather)
    assert ck.restore_latest(_state()) == (None, None)
    for e in (1, 2, 3):
        ck.save(_state(e), epoch=e)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".checksums", "2", "3"]
    restored, epoch = ck.restore_latest(_state())
    assert epoch == 3
    np.testing.assert_array_equal(restored["w"], np.arange(6.0).reshape(2, 3) * 3)
    assert restored["step"].dtype == np.int32 and int(restored["step"]) == 4
    assert jax.random.uniform(restored["key"]) == jax.random.uniform(jax.random.key(3))
    ck.close()


@pytest.mark.parametrize("gather", [False, True])
def test_wrong_model_and_damaged_file(tmp_path, gather):
    ck = Checkpointer(str(tmp_path), gather=gather)
    ck.save(_state(), epoch=1)
    with pytest.raises(ConfigError, match=r"checkpoint .*another model"):
        ck.restore_latest({"w": jnp.zeros((3, 3)), "step": jnp.int32(0),
                           "key": jax.random.key(0)})
    victim = next(p for p in (tmp_path / "1").rglob("*") if p.is_file() and p.stat().st_size)
    victim.write_bytes(b"damaged")
    with pytest.raises(ConfigError, match=r"checksum mismatch"):
        ck.restore_latest(_state())
    ck.close()
    with pytest.raises(ConfigError, match=r"checkpoint.max_to_keep: got 0"):
        Checkpointer(str(tmp_path), max_to_keep=0)
