"""HostCheckpointer: round trip (keys included), newest-only retention, clear errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcomp.core.errors import ConfigError
from jaxcomp.distributed.checkpoint import HostCheckpointer


def _state(scale=1.0):
    return {"w": jnp.arange(6.0).reshape(2, 3) * scale, "step": jnp.int32(4),
            "key": jax.random.key(3)}


def test_round_trip_and_retention(tmp_path):
    ck = HostCheckpointer(str(tmp_path), max_to_keep=2)
    assert ck.restore_latest(_state()) == (None, None)
    for e in (1, 2, 3):
        ck.save(_state(e), epoch=e)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_2.npz", "epoch_3.npz"]
    restored, epoch = ck.restore_latest(_state())
    assert epoch == 3
    np.testing.assert_array_equal(restored["w"], np.arange(6.0).reshape(2, 3) * 3)
    assert restored["step"].dtype == np.int32 and int(restored["step"]) == 4
    assert jax.random.uniform(restored["key"]) == jax.random.uniform(jax.random.key(3))


def test_wrong_model_and_unreadable_file(tmp_path):
    ck = HostCheckpointer(str(tmp_path))
    ck.save(_state(), epoch=1)
    with pytest.raises(ConfigError, match=r"epoch_1.npz holds 3 arrays .* expects 3 of shapes"):
        ck.restore_latest({"w": jnp.zeros((3, 3)), "step": jnp.int32(0), "key": jax.random.key(0)})
    (tmp_path / "epoch_2.npz").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match=r"epoch_2.npz is unreadable"):
        ck.restore_latest(_state())
    with pytest.raises(ConfigError, match=r"checkpoint.max_to_keep: got 0"):
        HostCheckpointer(str(tmp_path), max_to_keep=0)
