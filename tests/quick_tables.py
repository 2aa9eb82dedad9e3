"""Run the paper tables' quick mode the way CI's users do: ``jaxcomp reproduce T<n> --quick``
(or ``all``).

Example:
    >>> callable(reproduce_quick)
    True
"""

from __future__ import annotations

import json
import math
import pathlib
from collections.abc import Sequence
from types import ModuleType

from jaxcomp.experiment.paper_table import Claim, TableResult, load_table, write_results


def reproduce_quick(table: str, out_dir: pathlib.Path, monkeypatch) -> dict[str, TableResult]:
    """``jaxcomp reproduce <table> --quick --out <out_dir>`` in-process (``table``: ``T<n>``
    or ``all``).

    Asserts the command exits 0 and wrote every ``T<n>_quick.md``/``.json`` it ran (each
    JSON's claims match its result) and the index; returns ``{table: TableResult}`` as
    written.
    """
    from jaxcomp.cli import main
    from jaxcomp.commands import reproduce

    seen: dict[str, TableResult] = {}
    real = reproduce.write_results

    def recording(result, *args, **kwargs):
        seen[result.table] = result
        return real(result, *args, **kwargs)

    monkeypatch.setattr(reproduce, "write_results", recording)
    assert main(["reproduce", table, "--quick", "--out", str(out_dir)]) == 0
    index = (out_dir / "README.md").read_text()
    for name, result in seen.items():
        assert result.quick
        data = json.loads((out_dir / f"{name}_quick.json").read_text())
        assert [c["id"] for c in data["claims"]] == [c.id for c in result.claims]
        assert data["quick"] is True and data["command"] == f"jaxcomp reproduce {name} --quick"
        assert (out_dir / f"{name}_quick.md").read_text().startswith(f"# {name}")
        assert f"[{name}]({name}_quick.md)" in index
    return seen


def check_result(result: TableResult, table: str, claim_ids: Sequence[str] | None = None,
                 undefined_ok: Sequence[str] = ()) -> ModuleType:
    """What every table's quick result must satisfy: it is ``table``'s, quick, its claims
    (with these ids, in order, when given) have finite values (or NaN, for the ids in
    ``undefined_ok``: a claim whose quantity is undefined and so fails). Returns the
    table's module."""
    module = load_table(table)
    assert module.TABLE == table and module.TITLE
    assert isinstance(result, TableResult) and result.quick and result.table == table
    if claim_ids is not None:
        assert [c.id for c in result.claims] == list(claim_ids)
    assert all(isinstance(c, Claim) for c in result.claims)
    assert all(math.isfinite(c.value) or (c.id in undefined_ok and math.isnan(c.value))
               for c in result.claims), [(c.id, c.value) for c in result.claims]
    return module


def check_written(result: TableResult, out_dir: pathlib.Path) -> None:
    """``write_results`` writes the quick Markdown (with its claims) and the JSON."""
    md, js = write_results(result, out_dir)
    assert md.name == f"{result.table}_quick.md" and "Claims" in md.read_text() and js.exists()
