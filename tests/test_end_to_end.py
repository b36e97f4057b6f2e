"""generate -> train -> kill -> resume -> predict -> evaluate, through the installed command line."""

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from andi_jax.data import io
from andi_jax.models import build_model
from andi_jax.train import checkpoint
from andi_jax.methods.all_lengths import params_dir
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


def test_predict_csv_keeps_track_ids_and_refuses_gaps(tmp_path):
  model, config = build_model("conv_transformer", {"width": 16, "heads": 2, "mlp": 32})
  params = jax.jit(jax.vmap(lambda k: model.init(k, jnp.zeros((1, 64)), jnp.array([64]))["params"]))(
      jax.random.split(jax.random.key(0), 2))
  checkpoint.save_params(params_dir(tmp_path / "ckpt"), jax.tree.map(np.asarray, params))  # as training exports
  checkpoint.write_meta(tmp_path / "ckpt", {"method": "all-lengths", "task": 1, "model": "conv_transformer",
                                            "model_config": dataclasses.asdict(config), "widths": [32, 128],
                                            "folds": 2, "classes": None, "data": "stored"})
  rng = np.random.default_rng(0)
  tracks = {"cell7": range(20), "cell9": [*range(12), *range(14, 26)]}  # cell9 skips frames 12-13
  lines = ["track_id,frame,x,y"] + [f"{tid},{f},{rng.normal()},{rng.normal()}" for tid, fs in tracks.items() for f in fs]
  (tmp_path / "tracks.csv").write_text("\n".join(lines) + "\n")
  out = tmp_path / "pred.csv"
  refused = subprocess.run(CLI + ["predict", str(tmp_path / "tracks.csv"), "--checkpoint", str(tmp_path / "ckpt"),
                                  "--out", str(out)], capture_output=True, text=True)
  assert refused.returncode != 0 and "'cell9' jumps from frame 11 to 14" in refused.stderr and not out.exists()
  run("predict", tmp_path / "tracks.csv", "--checkpoint", tmp_path / "ckpt", "--out", out, "--gaps", "split")
  rows = [line.split(",") for line in out.read_text().splitlines()]
  assert rows[0] == ["track_id", "dim", "alpha"] and [r[:2] for r in rows[1:]] == [["cell7", "2"], ["cell9:0", "2"],
                                                                                  ["cell9:1", "2"]]
  assert all(np.isfinite(float(r[2])) for r in rows[1:])
