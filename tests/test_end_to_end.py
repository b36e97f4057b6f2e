"""generate -> train -> kill -> resume -> predict -> evaluate, through the installed command line."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from andi_jax.data import io
from andi_jax.train.checkpoint import read_meta

CLI = [sys.executable, "-m", "andi_jax.cli"]


def run(*args, **kw):
  return subprocess.run(CLI + [str(a) for a in args], check=True, capture_output=True, text=True, **kw)


def test_generate_train_kill_resume_predict_evaluate(tmp_path):
  run("generate", "--n", 200, "--dim", 2, "--seed", 7, "--workers", 1, "--out", tmp_path / "test")
  trajs = io.read_trajectories(tmp_path / "test" / "task1.txt")
  assert len(trajs) == 200 and all(t.shape[0] == 2 and 10 <= t.shape[1] <= 999 for t in trajs)

  ckpt = tmp_path / "ckpt"
  train = ["train", "--n", 2400, "--lengths", "10,20", "--folds", 2, "--batch", 64, "--epochs", 6,
           "--checkpoint-every", 3, "--workers", 1, "--cache", tmp_path / "cache", "--checkpoint", ckpt]
  proc = subprocess.Popen(CLI + [str(a) for a in train], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  group = ckpt / "train" / "group_10-10"
  deadline = time.time() + 300
  while not (group.exists() and any(p.name.isdigit() for p in group.iterdir())):
    assert proc.poll() is None, "training ended before it could be killed"
    assert time.time() < deadline
    time.sleep(0.05)
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait()
  assert not (ckpt / "meta.json").exists() or 20 not in read_meta(ckpt)["lengths"]

  out = run(*train).stdout  # resumes
  assert "length   10" in out and "length   20" in out
  assert read_meta(ckpt)["lengths"] == [10, 20]

  run("predict", tmp_path / "test" / "task1.txt", "--checkpoint", ckpt, "--out", tmp_path / "pred.txt")
  dims, alpha = io.read_labels(tmp_path / "pred.txt")
  assert len(alpha) == 200 and set(dims) == {2} and np.all((alpha >= 0.05) & (alpha <= 2.0))

  report = run("evaluate", "--pred", tmp_path / "pred.txt", "--ref", tmp_path / "test" / "ref1.txt",
               "--trajs", tmp_path / "test" / "task1.txt").stdout
  assert "| all | 200 |" in report and "| [10,50) |" in report and "| [500,1000) |" in report


def test_predict_reports_bad_input_with_file_and_line(tmp_path):
  bad = tmp_path / "task1.txt"
  bad.write_text("1;" + ";".join(["0.1"] * 12) + "\n1;0.1;nan;" + ";".join(["0.2"] * 10) + "\n")
  pred = tmp_path / "pred.txt"
  pred.write_text("keep me\n")
  result = subprocess.run(CLI + ["predict", str(bad), "--checkpoint", str(tmp_path), "--out", str(pred)],
                          capture_output=True, text=True)
  assert result.returncode != 0
  assert "task1.txt" in result.stderr and "line 2" in result.stderr
  assert pred.read_text() == "keep me\n"


def test_train_refuses_streams_that_do_not_divide_the_folds(tmp_path):
  result = subprocess.run(CLI + ["train", "--data", "onthefly", "--folds", "5", "--streams", "2",
                                 "--checkpoint", str(tmp_path)], capture_output=True, text=True)
  assert result.returncode != 0 and "--streams 2" in result.stderr and "--folds (5)" in result.stderr
  assert not any(tmp_path.iterdir())  # refused before anything was generated or written
