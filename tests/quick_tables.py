"""Run a paper table's quick mode the way CI's users do: ``jaxcomp reproduce T<n> --quick``.

Example:
    >>> callable(reproduce_quick)
    True
"""

from __future__ import annotations

import json
import pathlib

from jaxcomp.experiment.paper_table import TableResult


def reproduce_quick(table: str, out_dir: pathlib.Path, monkeypatch) -> TableResult:
    """``jaxcomp reproduce <table> --quick --out <out_dir>`` in-process.

    Asserts the command exits 0 and wrote ``<table>_quick.md``/``.json`` (the JSON's
    claims and numbers match the result); returns the :class:`TableResult` the command
    wrote, for the caller's own checks.
    """
    from jaxcomp.cli import main
    from jaxcomp.commands import reproduce

    seen: list[TableResult] = []
    real = reproduce.write_results

    def recording(result, *args, **kwargs):
        seen.append(result)
        return real(result, *args, **kwargs)

    monkeypatch.setattr(reproduce, "write_results", recording)
    assert main(["reproduce", table, "--quick", "--out", str(out_dir)]) == 0
    assert len(seen) == 1 and seen[0].table == table and seen[0].quick
    data = json.loads((out_dir / f"{table}_quick.json").read_text())
    assert [c["id"] for c in data["claims"]] == [c.id for c in seen[0].claims]
    assert data["quick"] is True and data["command"] == f"jaxcomp reproduce {table} --quick"
    assert (out_dir / f"{table}_quick.md").read_text().startswith(f"# {table}")
    assert (out_dir / "README.md").exists()  # the index of results
    return seen[0]
