"""Test-session plumbing only (no fixtures): make ``--dist loadgroup`` (test.sh) honour
``pytest.mark.xdist_group`` under pytest >= 9.2, and release compiled programs between
test files.

Every program XLA:CPU compiles keeps about 14 memory mappings until JAX's caches drop
it, and a test worker compiles thousands: near Linux's default ``vm.max_map_count``
(65530) a worker died mid-run (a segfault inside an XLA compile, or "terminate called
after throwing std::system_error: Resource temporarily unavailable" when a thread could
not be started). After a test file, once a worker holds over 16k mappings,
:func:`jax.clear_caches` lets them go (not after every file: the next files would
compile again what they share).

pytest-xdist (3.8.0, the newest) groups tests by appending ``@<group>`` to each marked
item's node id in its workers, by assigning ``item._nodeid``. pytest 9.2 keeps node ids in
``item._id`` (a structured ``NodeId``) and no longer reads ``_nodeid``, so the suffix never
reaches the scheduler: every marked test was scheduled on its own and a module's costly
fixture was built on both workers (pytest-dev/pytest-xdist#1386, unfixed upstream). The
hook below adds the same suffix the same way where xdist's did not take, and stops the run
if it could not, so the grouping cannot silently lapse again.
"""

from __future__ import annotations

import gc

import jax
import pytest


def _group(item: pytest.Item) -> str | None:
    """The suffix xdist would add: its group names, sorted and joined by ``_``."""
    names = {str(m.args[0] if m.args else m.kwargs.get("name", "default"))
             for m in item.iter_markers("xdist_group")}
    return "_".join(sorted(names)) if names else None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not getattr(config.option, "loadgroup", False):  # set in xdist workers only
        return
    for item in items:
        group = _group(item)
        if group is None:
            continue
        want = f"{item.nodeid}@{group}"
        if item.nodeid.endswith(f"@{group}"):
            continue  # xdist's own suffix took effect (pytest < 9.2, or a fixed xdist)
        if hasattr(item, "_id"):  # pytest >= 9.2: a NodeId; parse keeps the exact string
            item._id = type(item._id).parse(want)
        else:
            item._nodeid = want
        if item.nodeid != want:
            raise pytest.UsageError(
                f"cannot add the xdist group to {item.nodeid!r}: with --dist loadgroup its "
                f"tests would be spread over the workers (see tests/conftest.py)")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None):
    """After a test file's last test (module fixtures torn down): drop compiled programs
    once there are many."""
    result = yield
    if nextitem is None or nextitem.path != item.path:
        n = _mappings()
        if n is None or n > 16_384:
            jax.clear_caches()
            gc.collect()
    return result


def _mappings() -> int | None:
    """This process's memory mappings (Linux), or None where that cannot be read."""
    try:
        with open("/proc/self/maps", "rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return None
