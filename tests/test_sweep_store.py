"""The JSONL store: complete lines only, torn last lines repaired, manifest guard."""

import json
import math

import pytest

from jaxcomp.core.errors import ConfigError
from jaxcomp.sweep.store import MANIFEST, RESULTS, ResultStore


def test_append_read_roundtrip(tmp_path):
    s = ResultStore(tmp_path)
    recs = [{"key": f"k{i}", "status": "ok", "metrics": {"acc": i / 10}} for i in range(5)]
    for r in recs:
        s.append(r)
    assert s.records() == recs
    lines = (tmp_path / RESULTS).read_text().splitlines()
    assert [json.loads(x) for x in lines] == recs
    assert s.finished_keys() == {f"k{i}" for i in range(5)}


def test_nan_is_stored_as_null_and_strict_json(tmp_path):
    s = ResultStore(tmp_path)
    s.append({"key": "a", "status": "diverged", "metrics": {"loss": math.nan, "x": [math.inf]}})
    raw = (tmp_path / RESULTS).read_text()
    assert "NaN" not in raw and "Infinity" not in raw
    assert s.records()[0]["metrics"] == {"loss": None, "x": [None]}


@pytest.mark.parametrize("torn", [b'{"key": "c", "sta', b'{"key": "c"}', b"garbage\n"])
def test_torn_last_line_is_dropped_and_truncated(tmp_path, torn):
    s = ResultStore(tmp_path)
    s.append({"key": "a", "status": "ok"})
    s.append({"key": "b", "status": "ok"})
    good = (tmp_path / RESULTS).read_bytes()
    with open(tmp_path / RESULTS, "ab") as f:
        f.write(torn)
    assert [r["key"] for r in s.records()] == ["a", "b"]
    s2 = ResultStore(tmp_path)  # reopening repairs the file
    assert (tmp_path / RESULTS).read_bytes() == good
    s2.append({"key": "c", "status": "ok"})
    assert [r["key"] for r in s2.records()] == ["a", "b", "c"]


def test_latest_prefers_finished_records(tmp_path):
    s = ResultStore(tmp_path)
    s.append({"key": "a", "status": "error"})
    s.append({"key": "a", "status": "ok", "v": 1})
    s.append({"key": "b", "status": "error"})
    latest = {r["key"]: r for r in s.latest()}
    assert latest["a"]["v"] == 1 and latest["b"]["status"] == "error"
    assert s.finished_keys() == {"a"}


def test_manifest_claims_directory_and_refuses_other_sweeps(tmp_path):
    s = ResultStore(tmp_path)
    s.claim("hash1", {"config_path": "configs/a.py"})
    assert json.loads((tmp_path / MANIFEST).read_text())["sweep_hash"] == "hash1"
    s.claim("hash1", {"config_path": "configs/a.py"})  # same sweep: fine
    with pytest.raises(ConfigError, match=r"holds results of another sweep \(config "
                                          r"'configs/a.py', hash hash1\)"):
        ResultStore(tmp_path).claim("hash2", {"config_path": "configs/b.py"})


def test_results_without_manifest_are_refused(tmp_path):
    (tmp_path / RESULTS).write_text('{"key": "x"}\n')
    with pytest.raises(ConfigError, match="without a manifest"):
        ResultStore(tmp_path).claim("h", {})


def test_read_only_store_neither_creates_nor_writes(tmp_path):
    ro = ResultStore(tmp_path / "absent", read_only=True)
    ro.append({"key": "a", "status": "ok"})
    assert not (tmp_path / "absent").exists() and ro.records() == []
    ResultStore(tmp_path / "d").append({"key": "a", "status": "ok"})
    shared = ResultStore(tmp_path / "d", read_only=True)
    shared.append({"key": "b", "status": "ok"})
    assert shared.finished_keys() == {"a"}
