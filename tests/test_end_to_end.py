"""generate -> train -> kill -> resume -> predict -> evaluate, through the installed command line."""

import dataclasses
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from andi_jax.data import io
from andi_jax.methods.all_lengths import params_dir
from andi_jax.models import build_model
from andi_jax.train import checkpoint
from andi_jax.train.checkpoint import read_meta

CLI = [sys.executable, "-m", "andi_jax.cli"]


def run(*args, **kw):
  return subprocess.run(CLI + [str(a) for a in args], check=True, capture_output=True, text=True, **kw)


def test_generate_train_kill_resume_predict_evaluate(tmp_path):
  run("generate", "--n", 200, "--dim", 2, "--seed", 7, "--workers", 1, "--out", tmp_path / "test")
  trajs = io.read_trajectories(tmp_path / "test" / "task1.txt")
  assert len(trajs) == 200 and all(t.shape[0] == 2 and 10 <= t.shape[1] <= 999 for t in trajs)

  ckpt = tmp_path / "ckpt"
  train = [
    "train",
    "--n",
    2400,
    "--lengths",
    "10,20",
    "--folds",
    2,
    "--batch",
    64,
    "--epochs",
    6,
    "--checkpoint-every",
    3,
    "--workers",
    1,
    "--cache",
    tmp_path / "cache",
    "--checkpoint",
    ckpt,
  ]
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

  report = run(
    "evaluate",
    "--pred",
    tmp_path / "pred.txt",
    "--ref",
    tmp_path / "test" / "ref1.txt",
    "--trajs",
    tmp_path / "test" / "task1.txt",
  ).stdout
  assert "| all | 200 |" in report and "| [10,50) |" in report and "| [500,1000) |" in report


def test_predict_reports_bad_input_with_file_and_line(tmp_path):
  bad = tmp_path / "task1.txt"
  bad.write_text("1;" + ";".join(["0.1"] * 12) + "\n1;0.1;nan;" + ";".join(["0.2"] * 10) + "\n")
  pred = tmp_path / "pred.txt"
  pred.write_text("keep me\n")
  result = subprocess.run(
    CLI + ["predict", str(bad), "--checkpoint", str(tmp_path), "--out", str(pred)],
    capture_output=True,
    text=True,
  )
  assert result.returncode != 0
  assert "task1.txt" in result.stderr and "line 2" in result.stderr
  assert pred.read_text() == "keep me\n"


def test_train_refuses_streams_that_do_not_divide_the_folds(tmp_path):
  result = subprocess.run(
    CLI + ["train", "--data", "onthefly", "--folds", "5", "--streams", "2", "--checkpoint", str(tmp_path)],
    capture_output=True,
    text=True,
  )
  assert result.returncode != 0 and "--streams 2" in result.stderr and "--folds (5)" in result.stderr
  assert not any(tmp_path.iterdir())  # refused before anything was generated or written


def _untrained_checkpoint(path, task):
  """An all-lengths ConvTransformer checkpoint of two folds at their initial parameters."""
  model, config = build_model(
    "conv_transformer", {"width": 16, "heads": 2, "mlp": 32, "outputs": 1 if task == 1 else 5}
  )
  params = jax.jit(jax.vmap(lambda k: model.init(k, jnp.zeros((1, 64)), jnp.array([64]))["params"]))(
    jax.random.split(jax.random.key(0), 2)
  )
  checkpoint.save_params(params_dir(path), jax.tree.map(np.asarray, params))  # as training exports
  checkpoint.write_meta(
    path,
    {
      "method": "all-lengths",
      "task": task,
      "model": "conv_transformer",
      "model_config": dataclasses.asdict(config),
      "widths": [32, 128],
      "folds": 2,
      "classes": ["ATTM", "CTRW", "FBM", "LW", "SBM"] if task == 2 else None,
      "data": "stored",
    },
  )


def test_predict_csv_keeps_track_ids_and_refuses_gaps(tmp_path):
  _untrained_checkpoint(tmp_path / "ckpt", task=1)
  rng = np.random.default_rng(0)
  tracks = {"cell7": range(20), "cell9": [*range(12), *range(14, 26)]}  # cell9 skips frames 12-13
  lines = ["track_id,frame,x,y"] + [
    f"{tid},{f},{rng.normal()},{rng.normal()}" for tid, fs in tracks.items() for f in fs
  ]
  (tmp_path / "tracks.csv").write_text("\n".join(lines) + "\n")
  out = tmp_path / "pred.csv"
  refused = subprocess.run(
    CLI
    + ["predict", str(tmp_path / "tracks.csv"), "--checkpoint", str(tmp_path / "ckpt"), "--out", str(out)],
    capture_output=True,
    text=True,
  )
  assert (
    refused.returncode != 0 and "'cell9' jumps from frame 11 to 14" in refused.stderr and not out.exists()
  )
  run("predict", tmp_path / "tracks.csv", "--checkpoint", tmp_path / "ckpt", "--out", out, "--gaps", "split")
  rows = [line.split(",") for line in out.read_text().splitlines()]
  assert rows[0] == ["track_id", "dim", "alpha"] and [r[:2] for r in rows[1:]] == [
    ["cell7", "2"],
    ["cell9:0", "2"],
    ["cell9:1", "2"],
  ]
  assert all(np.isfinite(float(r[2])) for r in rows[1:])


def test_predict_streams_in_chunks_and_a_late_error_leaves_no_partial_output(tmp_path):
  ckpt = tmp_path / "ckpt"
  _untrained_checkpoint(ckpt, task=2)
  rng = np.random.default_rng(1)
  trajs = [rng.normal(size=(1, L)).cumsum(1) for L in rng.integers(10, 80, 7)]
  io.write_trajectories(tmp_path / "t.txt", trajs)
  outs = {}
  for chunk in (3, 100):
    out = tmp_path / f"pred{chunk}.txt"
    run("predict", tmp_path / "t.txt", "--checkpoint", ckpt, "--task", 2, "--out", out, "--chunk", chunk)
    outs[chunk] = (out.read_text(), (tmp_path / f"pred{chunk}.proba.csv").read_text())
  assert outs[3] == outs[100] and len(outs[3][0].splitlines()) == 7  # chunks change nothing
  io.write_trajectories(
    tmp_path / "bad.txt", trajs[:5] + [np.ones((1, 20))] + trajs[5:]
  )  # constant, in chunk 2
  (tmp_path / "keep.txt").write_text("keep me\n")
  bad = subprocess.run(
    CLI
    + [
      "predict",
      str(tmp_path / "bad.txt"),
      "--checkpoint",
      str(ckpt),
      "--task",
      "2",
      "--out",
      str(tmp_path / "keep.txt"),
      "--chunk",
      "3",
    ],
    capture_output=True,
    text=True,
  )
  assert bad.returncode != 0 and "trajectory 5: constant" in bad.stderr
  assert (tmp_path / "keep.txt").read_text() == "keep me\n" and not (tmp_path / "keep.proba.csv").exists()
  assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_interrupted_predict_keeps_the_earlier_output(tmp_path):
  ckpt = tmp_path / "ckpt"
  _untrained_checkpoint(ckpt, task=1)
  rng = np.random.default_rng(2)
  io.write_trajectories(tmp_path / "t.txt", list(rng.normal(size=(20000, 1, 40)).cumsum(2)))
  out = tmp_path / "pred.txt"
  out.write_text("keep me\n")
  proc = subprocess.Popen(
    CLI + ["predict", str(tmp_path / "t.txt"), "--checkpoint", str(ckpt), "--out", str(out), "--chunk", "10"],
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,
    text=True,
    preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
  )  # not inherited ignored
  deadline = time.time() + 120
  while not any(p.name.startswith(".pred.txt.") for p in tmp_path.iterdir()):  # writing into its temp file
    assert proc.poll() is None and time.time() < deadline
    time.sleep(0.05)
  time.sleep(0.5)
  assert proc.poll() is None, "predict ended before it could be interrupted"
  proc.send_signal(signal.SIGINT)
  stderr = proc.communicate(timeout=60)[1]
  assert proc.returncode == 130 and stderr.strip().splitlines()[-1].startswith("error: predict interrupted")
  assert out.read_text() == "keep me\n" and not any(
    p.name.startswith(".pred.txt.") for p in tmp_path.iterdir()
  )
