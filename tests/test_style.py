"""The tree is formatted and lint-clean by ruff (pyproject.toml's settings), so CI checks the style."""

import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).parent.parent


def _ruff(*args):
  ruff = shutil.which("ruff", path=str(pathlib.Path(sys.executable).parent)) or shutil.which("ruff")
  assert ruff, "ruff is not installed: pip install -e '.[test]'"
  return subprocess.run([ruff, *args], cwd=ROOT, capture_output=True, text=True)


def test_formatted():
  result = _ruff("format", "--check", ".")
  assert result.returncode == 0, result.stdout + result.stderr


def test_lint_clean():
  result = _ruff("check", ".")
  assert result.returncode == 0, result.stdout + result.stderr
