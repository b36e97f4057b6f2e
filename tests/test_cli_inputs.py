"""The command line refuses bad inputs and outputs before any work: one line on stderr, nothing written."""

import os
import subprocess
import sys

import numpy as np
import pytest

from andi_jax.data import io

CLI = [sys.executable, "-m", "andi_jax.cli"]
# The huge-page option already set: the command line runs without re-executing itself (half the start-up).
ENV = dict(
  os.environ,
  GLIBC_TUNABLES=":".join(filter(None, [os.environ.get("GLIBC_TUNABLES"), "glibc.malloc.hugetlb=1"])),
)
KEEP = "keep me\n"


def refused(*args) -> str:
  """Runs the command line, asserts it failed with one 'error:' line and no traceback; returns that line."""
  result = subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True, env=ENV)
  assert result.returncode != 0
  assert "Traceback" not in result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
  return lines[0]


def trajectories(path, n, dim=1):
  rng = np.random.default_rng(0)
  io.write_trajectories(path, [rng.normal(size=(dim, 20)).cumsum(1) for _ in range(n)])
  return path


# evaluate


@pytest.mark.parametrize("bad", ["pred", "ref"])
def test_evaluate_refuses_task2_labels_that_are_not_model_indices(tmp_path, bad):
  files = {"pred": tmp_path / "pred.txt", "ref": tmp_path / "ref.txt"}
  io.write_labels(files["pred"], [1, 1, 1], [0, 3, 4], fmt="%d")
  io.write_labels(files["ref"], [1, 1, 1], [0, 3, 4], fmt="%d")
  io.write_labels(files[bad], [1, 1, 1], [4, 0.83, 0.70], fmt="%.2f")  # alpha values, not labels
  line = refused("evaluate", "--task", 2, "--pred", files["pred"], "--ref", files["ref"])
  assert line == f"error: {files[bad]}: line 2: Task 2 label 0.83 is not an integer 0..4"


def test_evaluate_refuses_task1_values_that_are_not_finite(tmp_path):
  (tmp_path / "pred.txt").write_text("1;0.5\n1;nan\n")
  io.write_labels(tmp_path / "ref.txt", [1, 1], [0.5, 0.7])
  line = refused("evaluate", "--pred", tmp_path / "pred.txt", "--ref", tmp_path / "ref.txt")
  assert f"{tmp_path / 'pred.txt'}: line 2" in line and "not finite" in line


def test_evaluate_refuses_dimensions_that_differ(tmp_path):
  io.write_labels(tmp_path / "pred.txt", [1, 2, 3], [0.5, 0.7, 0.9])
  io.write_labels(tmp_path / "ref.txt", [1, 2, 2], [0.5, 0.7, 0.9])
  line = refused("evaluate", "--pred", tmp_path / "pred.txt", "--ref", tmp_path / "ref.txt")
  assert f"{tmp_path / 'pred.txt'}: line 3: dimension 3" in line and "ref.txt line 3 has dimension 2" in line


def test_evaluate_refuses_counts_that_differ(tmp_path):
  io.write_labels(tmp_path / "pred.txt", [1, 1, 1], [0.5, 0.7, 0.9])
  io.write_labels(tmp_path / "ref.txt", [1, 1, 1], [0.5, 0.7, 0.9])
  trajs = trajectories(tmp_path / "task1.txt", 2)
  line = refused("evaluate", "--pred", tmp_path / "pred.txt", "--ref", tmp_path / "ref.txt", "--trajs", trajs)
  pred, ref = tmp_path / "pred.txt", tmp_path / "ref.txt"
  assert line == f"error: counts differ: {pred} has 3 lines, {ref} has 3 lines, {trajs} has 2 trajectories"


def test_evaluate_names_the_file_that_is_not_utf8(tmp_path):
  io.write_labels(tmp_path / "pred.txt", [1], [0.5])
  (tmp_path / "ref.txt").write_bytes("1;0.5 café\n".encode("latin-1"))
  line = refused("evaluate", "--pred", tmp_path / "pred.txt", "--ref", tmp_path / "ref.txt")
  assert line.startswith(f"error: {tmp_path / 'ref.txt'}: ") and "not UTF-8 text (byte 9" in line


# generate


@pytest.mark.parametrize("option,value", [("--n", 0), ("--n", -5), ("--workers", 0)])
def test_generate_refuses_counts_below_one(tmp_path, option, value):
  (tmp_path / "out").mkdir()
  (tmp_path / "out" / "ref1.txt").write_text(KEEP)
  line = refused("generate", option, value, "--cache", tmp_path / "cache", "--out", tmp_path / "out")
  assert f"{option} {value}" in line
  assert os.listdir(tmp_path / "out") == ["ref1.txt"] and (tmp_path / "out" / "ref1.txt").read_text() == KEEP
  assert not (tmp_path / "cache").exists()  # nothing was generated


def test_generate_refuses_an_out_that_is_a_file(tmp_path):
  (tmp_path / "out").write_text(KEEP)
  line = refused(
    "generate", "--n", 10, "--workers", 1, "--cache", tmp_path / "cache", "--out", tmp_path / "out"
  )
  assert f"--out {tmp_path / 'out'}" in line and "not a directory" in line
  assert (tmp_path / "out").read_text() == KEEP and not (tmp_path / "cache").exists()


# predict and explain: the checkpoint is any directory, as the refusals come before it is loaded


def _unwritable(tmp_path):
  if os.geteuid() == 0:
    pytest.skip("root writes anywhere")
  (tmp_path / "locked").mkdir(mode=0o555)
  return tmp_path / "locked" / "pred.txt", "is not writable"


@pytest.mark.parametrize("case", ["missing parent", "directory", "unwritable", "the input"])
def test_predict_refuses_an_out_it_cannot_write(tmp_path, case):
  trajs = trajectories(tmp_path / "task1.txt", 3)
  (tmp_path / "dir").mkdir()
  out, what = {
    "missing parent": (tmp_path / "no" / "pred.txt", "is not an existing directory"),
    "directory": (tmp_path / "dir", "is a directory"),
    "the input": (trajs, "is the input file"),
  }.get(case) or _unwritable(tmp_path)
  before = trajs.read_bytes()
  line = refused("predict", trajs, "--checkpoint", tmp_path / "dir", "--out", out)
  assert line.startswith(f"error: --out {out}: ") and what in line
  assert trajs.read_bytes() == before and not os.listdir(tmp_path / "dir") and not (tmp_path / "no").exists()


@pytest.mark.parametrize("case", ["missing", "directory"])
def test_predict_refuses_an_input_that_is_not_a_file(tmp_path, case):
  (tmp_path / "pred.txt").write_text(KEEP)
  (tmp_path / "dir.txt").mkdir()
  path, what = {
    "missing": (tmp_path / "none.txt", "no such file"),
    "directory": (tmp_path / "dir.txt", "is a directory, not a file"),
  }[case]
  line = refused("predict", path, "--checkpoint", tmp_path, "--out", tmp_path / "pred.txt")
  assert line == f"error: {path}: {what}"
  assert (tmp_path / "pred.txt").read_text() == KEEP


@pytest.mark.parametrize(
  "content",
  [np.random.default_rng(0).bytes(200), "1;0.1;0.2 µm\n".encode("latin-1")],
  ids=["random bytes", "latin-1"],
)
def test_predict_names_the_input_that_is_not_utf8(tmp_path, content):
  (tmp_path / "some.txt").write_bytes(content)
  (tmp_path / "pred.txt").write_text(KEEP)
  with pytest.raises(UnicodeDecodeError) as first_bad:  # where the file's first bad byte is
    content.decode()
  line = refused("predict", tmp_path / "some.txt", "--checkpoint", tmp_path, "--out", tmp_path / "pred.txt")
  assert line.startswith(f"error: {tmp_path / 'some.txt'}: ")
  assert f"not UTF-8 text (byte {first_bad.value.start}" in line
  assert (tmp_path / "pred.txt").read_text() == KEEP


@pytest.mark.parametrize("case", ["parent a file", "file"])
def test_explain_refuses_an_out_it_cannot_write(tmp_path, case):
  trajs = trajectories(tmp_path / "t.txt", 2, dim=2)
  (tmp_path / "file").write_text(KEEP)
  out, what = (
    (tmp_path / "file" / "ex", "is not an existing directory")
    if case == "parent a file"
    else (tmp_path / "file", "exists and is not a directory")
  )
  line = refused("explain", trajs, "--checkpoint", tmp_path, "--out", out)
  assert line.startswith(f"error: --out {out}: ") and what in line
  assert (tmp_path / "file").read_text() == KEEP and not (tmp_path / "no").exists()
