"""Every ```python block of the guides in docs/ runs on its own (see tests/test_readme.py).

A block preceded by ``<!-- no-test -->`` is not run; ``NO_TEST`` lists every such block
(by file and first line of code), so a new skip is a deliberate change of this file.
"""

from __future__ import annotations

import pathlib

import pytest

from tests.test_readme import ROOT, python_blocks, run_block

GUIDES = sorted((ROOT / "docs").glob("*.md"))
BLOCKS = [b for g in GUIDES for b in python_blocks(g)]

#: blocks that cannot run here, with the reason
NO_TEST = {
}


def _first_code_line(block) -> str:
    return next(ln for ln in block.source.splitlines() if ln.strip())


def test_no_test_markers_are_the_listed_ones():
    skipped = {(pathlib.Path(b.file).name, _first_code_line(b)) for b in BLOCKS if b.skip}
    assert skipped == set(NO_TEST), skipped ^ set(NO_TEST)


@pytest.mark.slow
@pytest.mark.parametrize("block", [b for b in BLOCKS if not b.skip],
                         ids=[b.name for b in BLOCKS if not b.skip])
def test_guide_python_block_runs_alone(block, tmp_path):
    run_block(block, tmp_path)


def test_blocks_are_found_with_their_lines_and_no_test_marker(tmp_path):
    md = tmp_path / "guide.md"
    md.write_text("# t\n\n```python\nx = 1\n```\n\n<!-- no-test -->\n```python\ny = 2\n```\n"
                  "```bash\nls\n```\n")
    blocks = python_blocks(md)
    assert [(b.line, b.source, b.skip) for b in blocks] == [(4, "x = 1\n", False),
                                                            (9, "y = 2\n", True)]
