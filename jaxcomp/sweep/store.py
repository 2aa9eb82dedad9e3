"""The results store: an append-only JSONL file, one complete record per line,
plus a manifest that ties a directory to one sweep.

Each append is a single ``write`` of a whole line followed by ``flush`` and
``fsync``. A process killed mid-write can leave at most one torn last line;
opening the store drops it (the file is truncated back to the last complete
line), so a rerun neither loses finished records nor duplicates them.

Example:
    >>> import tempfile
    >>> store = ResultStore(tempfile.mkdtemp())
    >>> store.append({"key": "abc", "status": "ok", "metrics": {"test_accuracy": 0.5}})
    >>> store.finished_keys(), len(store.records())
    ({'abc'}, 1)
"""

from __future__ import annotations

import datetime
import json
import math
import os
import pathlib
from typing import Any

from jaxcomp.core.errors import ConfigError
from jaxcomp.core.files import json_default, write_json_atomic

RESULTS = "results.jsonl"
MANIFEST = "manifest.json"
FINISHED = ("ok", "diverged")


def _clean_floats(x: Any) -> Any:
    """NaN/inf become ``None`` so every line is strict JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean_floats(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean_floats(v) for v in x]
    return x


class ResultStore:
    """Records of one sweep directory (``results.jsonl`` and ``manifest.json``)."""

    def __init__(self, directory: str | os.PathLike, *, read_only: bool = False):
        """``read_only``: never create, repair or append (the processes of a
        multi-process run other than process 0, which alone writes)."""
        self.dir = pathlib.Path(directory)
        self.read_only = read_only
        self.path = self.dir / RESULTS
        if not read_only:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._repair()

    def _repair(self) -> None:
        """Truncate a torn or unreadable last line left by a killed writer."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        good = 0
        pos = 0
        while pos < len(data):
            nl = data.find(b"\n", pos)
            if nl < 0:
                break
            try:
                json.loads(data[pos:nl])
            except ValueError:
                break
            good = pos = nl + 1
        if good != len(data):
            with open(self.path, "r+b") as f:
                f.truncate(good)
                f.flush()
                os.fsync(f.fileno())

    def append(self, record: dict[str, Any]) -> None:
        """Append one record as one complete line (write + flush + fsync); a
        read-only store appends nothing."""
        self.append_many([record])

    def append_many(self, records: list[dict[str, Any]]) -> None:
        """Append records as complete lines in one write + fsync (a read-only store,
        or an empty list, appends nothing)."""
        if self.read_only or not records:
            return
        data = "".join(json.dumps(_clean_floats(r), default=json_default, allow_nan=False)
                       + "\n" for r in records).encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        finally:
            os.close(fd)

    def records(self) -> list[dict[str, Any]]:
        """Every complete record, in the order written."""
        if not self.path.exists():
            return []
        out = []
        with open(self.path, "rb") as f:
            for raw in f:
                if not raw.endswith(b"\n"):
                    break
                try:
                    out.append(json.loads(raw))
                except ValueError:
                    break
        return out

    def latest(self) -> list[dict[str, Any]]:
        """One record per run key: the last finished one (errors only if never finished)."""
        best: dict[str, dict[str, Any]] = {}
        for r in self.records():
            k = r.get("key")
            if k not in best or r.get("status") in FINISHED or \
                    best[k].get("status") not in FINISHED:
                best[k] = r
        return list(best.values())

    def finished_keys(self) -> set[str]:
        """Keys of runs that finished (``ok`` or ``diverged``): a rerun skips them."""
        return {r["key"] for r in self.records() if r.get("status") in FINISHED}

    # -- manifest ---------------------------------------------------------------------------

    def read_manifest(self) -> dict[str, Any] | None:
        p = self.dir / MANIFEST
        if not p.exists():
            return None
        try:
            return json.loads(p.read_text())
        except ValueError:
            raise ConfigError(f"{p} is not valid JSON; delete the directory to start over") \
                from None

    def claim(self, sweep_hash: str, info: dict[str, Any]) -> None:
        """Tie this directory to one sweep, or refuse one made by another config.

        Raises:
          ConfigError: the directory holds results of a sweep with another hash.
        """
        old = self.read_manifest()
        if old is not None:
            if old.get("sweep_hash") != sweep_hash:
                raise ConfigError(
                    f"--out {str(self.dir)!r} holds results of another sweep (config "
                    f"{old.get('config_path', '?')!r}, hash {old.get('sweep_hash')}); this "
                    f"sweep's hash is {sweep_hash}. Use another --out directory or delete it")
            return
        if self.path.exists() and self.path.stat().st_size > 0:
            raise ConfigError(f"--out {str(self.dir)!r} holds results without a manifest; "
                              f"use another --out directory or delete it")
        manifest = {"sweep_hash": sweep_hash, **info,
                    "created": datetime.datetime.now(datetime.UTC).isoformat(
                        timespec="seconds")}
        write_json_atomic(self.dir / MANIFEST, manifest, default=json_default)
