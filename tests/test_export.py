"""Exported graphs (ONNX through onnxruntime, StableHLO through jax.export.deserialize) predict what
`andi-jax predict` predicts, for every family the project trains; run_export.py does it without jax."""

import dataclasses
import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from andi_jax import export, infer, run_export
from andi_jax.data import io
from andi_jax.methods.all_lengths import params_dir
from andi_jax.methods.per_length import length_dir
from andi_jax.models import build_model
from andi_jax.train import checkpoint

pytest.importorskip("onnxruntime")
pytest.importorskip("jax2onnx")

CLASSES = ["ATTM", "CTRW", "FBM", "LW", "SBM"]
LENGTHS = (10, 11, 99, 100, 500, 999)
FAMILIES = {  # name: (registry model, config, task, method)
  "lstm_per_length": ("lstm", {"hidden": 8, "layers": 2, "outputs": 1}, 1, "hnu-per-length"),
  "conv_transformer_task1": (
    "conv_transformer",
    {"width": 16, "heads": 2, "mlp": 32, "outputs": 1},
    1,
    "all-lengths",
  ),
  "conv_transformer_task2": (
    "conv_transformer",
    {"width": 16, "heads": 2, "mlp": 32, "outputs": 5},
    2,
    "all-lengths",
  ),
  "resnet_task2": (
    "resnet",
    {"blocks": [1, 1], "width": 8, "norm_groups": 2, "stem_kernel": 7, "kernel": 3, "outputs": 5},
    2,
    "all-lengths",
  ),
}


def _params(model, folds, T, seed):
  """Two folds' parameters, moved off their initial values as training would (a scaled random step)."""
  init = jax.vmap(lambda k: model.init(k, jnp.zeros((1, T)), jnp.array([T]), train=False)["params"])
  params = init(jax.random.split(jax.random.key(seed), folds))
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
  step = [0.3 * jnp.std(a) * jax.random.normal(k, a.shape) for a, k in zip(leaves, keys)]
  return jax.tree.map(np.asarray, jax.tree.unflatten(tree, [a + s for a, s in zip(leaves, step)]))


def _checkpoint(path, family):
  name, config, task, method = FAMILIES[family]
  model, config = build_model(name, config)
  meta = {
    "method": method,
    "task": task,
    "model": name,
    "model_config": dataclasses.asdict(config),
    "folds": 2,
  }
  if method == "hnu-per-length":
    meta |= {"lengths": [10, 50, 100], "scale": 1.011, "clip": [0.05, 2.0]}
    for i, T in enumerate(meta["lengths"]):
      checkpoint.save_params(length_dir(path, T), _params(model, 2, T, seed=i))
  else:
    meta |= {"widths": [32, 128], "classes": CLASSES if task == 2 else None, "data": "stored"}
    checkpoint.save_params(params_dir(path), _params(model, 2, 64, seed=0))
  checkpoint.write_meta(path, meta)
  return path


def _trajectories(n, seed=0):
  """n random walks cycling through LENGTHS, 1D and 2D in turn."""
  rng = np.random.default_rng(seed)
  return [
    rng.standard_normal((1 + (i // len(LENGTHS)) % 2, LENGTHS[i % len(LENGTHS)])).cumsum(1) for i in range(n)
  ]


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family_checkpoint(request, tmp_path_factory):
  return request.param, _checkpoint(tmp_path_factory.mktemp(request.param), request.param)


@pytest.mark.parametrize("fmt", export.FORMATS)
def test_export_predicts_as_andi_jax_predict(family_checkpoint, fmt, tmp_path):
  family, path = family_checkpoint
  meta = export.export(str(path), fmt, str(tmp_path / "out"))
  predictor = infer.load(str(path))
  widths = [
    str(w) for w in ([10, 50, 100] if family == "lstm_per_length" else [16, 32, 64, 128, 256, 512, 1024])
  ]
  assert list(meta["graphs"]) == widths
  assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
    [*meta["graphs"].values(), "export.json", "run_export.py"]
  )
  many = _trajectories(1000)
  for trajectories, batch in ((many[:12], 1), (many, 1000)):
    want = predictor.predict(trajectories)
    got = run_export.predict(str(tmp_path / "out"), trajectories, batch_size=batch)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    if predictor.task == 2:
      assert (got.argmax(1) == want.argmax(1)).all()


@pytest.mark.parametrize("fmt", export.FORMATS)
def test_runner_without_andi_jax_writes_what_predict_writes(fmt, tmp_path):
  """ONNX: the runner never imports jax; StableHLO: never andi_jax."""
  path = _checkpoint(tmp_path / "ckpt", "conv_transformer_task2")
  export.export(str(path), fmt, str(tmp_path / "out"))
  trajectories = _trajectories(30)
  io.write_trajectories(tmp_path / "tracks.txt", trajectories)
  absent = ["andi_jax", "jax"] if fmt == "onnx" else ["andi_jax"]
  script = (
    "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__'); "
    f"assert not {absent} & sys.modules.keys(), 'the runner imported ' + str({absent} & sys.modules.keys())"
  )
  out = tmp_path / "runner.txt"
  subprocess.run(
    [
      sys.executable,
      "-c",
      script,
      str(tmp_path / "out" / "run_export.py"),
      str(tmp_path / "out"),
      str(tmp_path / "tracks.txt"),
      "--out",
      str(out),
    ],
    check=True,
    capture_output=True,
    text=True,
    cwd=tmp_path,
  )
  ref = tmp_path / "predict.txt"
  subprocess.run(
    [
      sys.executable,
      "-m",
      "andi_jax.cli",
      "predict",
      str(tmp_path / "tracks.txt"),
      "--task",
      "2",
      "--checkpoint",
      str(path),
      "--out",
      str(ref),
    ],
    check=True,
    capture_output=True,
    text=True,
  )
  assert out.read_text() == ref.read_text()  # dims and labels
  got = np.loadtxt(tmp_path / "runner.proba.csv", delimiter=",", skiprows=1)
  want = np.loadtxt(tmp_path / "predict.proba.csv", delimiter=",", skiprows=1)
  np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
  assert open(tmp_path / "runner.proba.csv").readline() == open(tmp_path / "predict.proba.csv").readline()


def _cli(*args):
  return subprocess.run(
    [sys.executable, "-m", "andi_jax.cli", "export", *map(str, args)], capture_output=True, text=True
  )


def test_bad_requests_get_one_line_and_leave_nothing(tmp_path):
  good = _checkpoint(tmp_path / "ckpt", "conv_transformer_task1")
  result = _cli("--checkpoint", good, "--format", "tflite", "--out", tmp_path / "a")
  assert result.returncode == 2 and "invalid choice: 'tflite'" in result.stderr
  result = _cli("--checkpoint", tmp_path, "--format", "onnx", "--out", tmp_path / "b")
  assert result.returncode == 1 and result.stderr.startswith("error: ") and "meta.json" in result.stderr
  lstm = tmp_path / "lstm_all"
  model, config = build_model("lstm", {"hidden": 8, "layers": 2})
  checkpoint.save_params(params_dir(lstm), _params(model, 2, 32, seed=0))
  meta = {"method": "all-lengths", "task": 1, "model": "lstm", "model_config": dataclasses.asdict(config)}
  checkpoint.write_meta(lstm, meta | {"folds": 2, "widths": [32], "classes": None, "data": "stored"})
  result = _cli("--checkpoint", lstm, "--format", "onnx", "--out", tmp_path / "c")
  assert result.returncode == 1 and result.stderr.count("\n") == 1
  assert "all-lengths LSTM has no ONNX export" in result.stderr and "stablehlo" in result.stderr
  (tmp_path / "d").mkdir()
  result = _cli("--checkpoint", good, "--format", "onnx", "--out", tmp_path / "d")
  assert result.returncode == 1 and "already exists" in result.stderr
  assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "d", "lstm_all"]  # no half-written export
  assert json.loads((good / "meta.json").read_text())["model"] == "conv_transformer"
