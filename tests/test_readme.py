"""The README's Python examples run as written (so the README stays current)."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples_and_the_two_commands():
    text = README.read_text()
    assert "./demo.sh" in text and "./test.sh" in text
    assert len(python_blocks()) >= 2


def test_readme_python_examples_run(capsys):
    namespace: dict = {}
    for block in python_blocks():
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102
    out = capsys.readouterr().out
    m = re.search(r"sparsity (\d\.\d+)", out)
    assert m and abs(float(m.group(1)) - 0.90) < 0.01
    assert namespace["svd"].s.shape == (32,)
