"""The README's Python examples run as written (on the 8 simulated devices)."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_has_examples():
  assert len(BLOCKS) >= 1


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index):
  exec(compile(BLOCKS[index], f"README.md block {index}", "exec"), {})  # pylint: disable=exec-used


def test_readme_test_command_is_what_ci_runs():
  text = README.read_text()
  commands = [line for line in text.splitlines()
              if "pytest" in line and line.startswith("python3 -m venv")]
  assert len(commands) == 1, commands
  ci = (README.parent / ".ci" / "run").read_text().splitlines()
  assert commands[0] in ci, "README command 2 and .ci/run disagree"
  assert "sphinx-build -W" in commands[0]
