"""Every ```python block of the README runs on its own, as a user would paste it.

Each block is written to a file in a fresh temporary directory and run there by a new
Python process (``JAX_PLATFORMS=cpu``, ``TMPDIR`` inside that directory, so whatever a
block writes stays under it). A block fails the test with its file and line named. A
comment ``# prints: TEXT`` after a statement means the block's output must contain TEXT
(the printed lines, in order). ``<!-- no-test -->`` on the line before a fence skips the
block (used only where a block cannot run here; see ``tests/test_docs.py``).
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
from typing import NamedTuple

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^(<!-- no-test -->[ \t]*\n)?```python\n(.*?)^```", re.S | re.M)
PRINTS = re.compile(r"#\s*prints:\s*(.+?)\s*$", re.M)
TIMEOUT_S = 600


class Block(NamedTuple):
    """One fenced python block: its file, first code line, source and no-test flag."""

    file: pathlib.Path
    line: int
    source: str
    skip: bool

    @property
    def name(self) -> str:
        return f"{self.file.relative_to(ROOT)}:{self.line}"


def python_blocks(path: pathlib.Path) -> list[Block]:
    """The ```python blocks of a markdown file, in order."""
    text = path.read_text()
    return [Block(path, text.count("\n", 0, m.start(2)) + 1, m.group(2), m.group(1) is not None)
            for m in FENCE.finditer(text)]


def run_block(block: Block, tmp_path: pathlib.Path) -> str:
    """Run one block alone in a new process under ``tmp_path``; return its stdout.

    Fails the test, naming the block, if the process exits non-zero or if an expected
    ``# prints:`` text is missing from its output.
    """
    # blank lines first, so a traceback's line numbers are the markdown file's
    script = tmp_path / f"{block.file.stem}_md.py"
    script.write_text("\n" * (block.line - 1) + block.source)
    (tmp_path / "tmp").mkdir()
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3",
               TMPDIR=str(tmp_path / "tmp"), MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    try:
        proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{block.name}: the python block did not finish in {TIMEOUT_S} s")
    if proc.returncode != 0:
        pytest.fail(f"{block.name}: the python block fails when run on its own "
                    f"(exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    pos = 0
    for want in PRINTS.findall(block.source):
        at = proc.stdout.find(want, pos)
        assert at >= 0, (f"{block.name}: expected the output to contain {want!r} "
                         f"(after position {pos}); got:\n{proc.stdout[-3000:]}")
        pos = at + len(want)
    return proc.stdout


README_BLOCKS = python_blocks(README)


def test_readme_has_examples_and_the_two_commands():
    text = README.read_text()
    assert "./demo.sh" in text and "./test.sh" in text
    assert len(README_BLOCKS) >= 2
    assert not any(b.skip for b in README_BLOCKS), "every README example must run"
    assert any(PRINTS.search(b.source) for b in README_BLOCKS), "no checked output"


@pytest.mark.parametrize("block", README_BLOCKS, ids=[b.name for b in README_BLOCKS])
def test_readme_python_block_runs_alone(block, tmp_path):
    run_block(block, tmp_path)


def test_a_failing_block_is_named(tmp_path):
    bad = Block(README, 7, "import jax\nprint(jnp.ones(2))\n", False)
    with pytest.raises(pytest.fail.Exception,
                       match=r"(?s)README.md:7.*line 8.*NameError: name 'jnp'"):
        run_block(bad, tmp_path)


def test_a_missing_printed_text_is_named(tmp_path):
    bad = Block(README, 9, 'print("sparsity 0.50")  # prints: sparsity 0.90\n', False)
    with pytest.raises(AssertionError, match=r"(?s)README.md:9.*'sparsity 0.90'"):
        run_block(bad, tmp_path)
