"""The shipped models: trained (better than the TAMSD fit on fresh andi-datasets trajectories), used by
`andi-jax predict` without a checkpoint, listed by `andi-jax models`, a damaged file named in one line; and
the path that makes them (experiments/pretrain.py's stages, at toy size) learns."""

import dataclasses
import json
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from andi_jax import cli, infer, metrics, pretrained, uncertainty
from andi_jax.data import io
from andi_jax.data.recipe import Recipe, generate
from andi_jax.methods.all_lengths import params_dir
from andi_jax.studies import pretrain, task1
from andi_jax.train import checkpoint
from andi_jax.train.engine import Ensemble, TrainConfig

CLI = [sys.executable, "-m", "andi_jax.cli"]


@pytest.fixture(scope="module")
def fresh():
  """Recipe trajectories of lengths 10..999 the shipped models never saw (own seed), 1D."""
  return generate(Recipe(n=400, dim=1, seed=777), workers=1, progress=False)


def test_shipped_models_beat_the_tamsd_fit_on_fresh_trajectories(fresh):
  trajs = fresh.trajectories()
  alpha = pretrained.load(1).predict(trajs)
  tamsd = np.array([metrics.tamsd_alpha(t) for t in trajs])
  assert metrics.mae(alpha, fresh.alpha) < 0.85 * metrics.mae(tamsd, fresh.alpha)
  proba = pretrained.load(2).predict(trajs)
  np.testing.assert_allclose(proba.sum(1), 1, atol=1e-5)
  assert metrics.f1_micro(proba.argmax(1), fresh.model) > 0.6  # chance: 0.2


def test_predict_without_checkpoint_uses_the_shipped_models(tmp_path, fresh):
  trajs = fresh.trajectories()[:50]
  io.write_trajectories(tmp_path / "t.txt", trajs)
  subprocess.run(
    CLI + ["predict", str(tmp_path / "t.txt"), "--out", str(tmp_path / "a.csv")],
    check=True,
    capture_output=True,
  )
  rows = np.genfromtxt(tmp_path / "a.csv", delimiter=",", names=True)
  model = pretrained.load(1)
  alpha = model.predict(trajs)
  np.testing.assert_allclose(rows["alpha"], alpha, atol=1e-5)
  np.testing.assert_allclose(rows["alpha_se"], model.standard_error(trajs, alpha), atol=1e-5)
  assert np.all(rows["alpha_se"] > 0)

  subprocess.run(
    CLI + ["predict", str(tmp_path / "t.txt"), "--task", "2", "--out", str(tmp_path / "m.txt")],
    check=True,
    capture_output=True,
  )
  labels = io.read_labels(tmp_path / "m.txt")[1]
  proba = np.genfromtxt(tmp_path / "m.proba.csv", delimiter=",", names=True)
  np.testing.assert_array_equal(labels, pretrained.load(2).predict(trajs).argmax(1))
  np.testing.assert_array_equal(proba["label"], labels)


def test_models_lists_both_with_their_scores():
  out = subprocess.run(CLI + ["models"], check=True, capture_output=True, text=True).stdout
  for task in (1, 2):
    card = pretrained.card(task)
    assert f"task{task}: Task {task}" in out and f"{card['parameters']:,} parameters" in out
  assert f"{pretrained.card(1)['scores']['1']['mae'][0]['value']:.3f}" in out
  assert pretrained.size_bytes(1) + pretrained.size_bytes(2) < 20e6


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_a_damaged_shipped_model_is_named_in_one_line(tmp_path, monkeypatch, damage):
  shutil.copytree(pretrained.DIR, tmp_path / "pretrained")
  monkeypatch.setattr(pretrained, "DIR", str(tmp_path / "pretrained"))
  params = params_dir(pretrained.path(1))
  victim = next(
    p for p in sorted((tmp_path / "pretrained").rglob("*")) if p.is_file() and str(p).startswith(params)
  )
  victim.unlink() if damage == "missing" else victim.write_bytes(b"\0" * 16)
  io.write_trajectories(tmp_path / "t.txt", [np.cumsum(np.random.default_rng(0).normal(size=(1, 30)), 1)])
  with pytest.raises(SystemExit) as e:
    cli.main(["predict", str(tmp_path / "t.txt"), "--out", str(tmp_path / "a.txt")])
  assert "shipped Task 1 model is missing or damaged" in str(e.value) and "reinstall" in str(e.value)
  assert not (tmp_path / "a.txt").exists()


def test_standard_error_table_is_calibrated_where_errors_are_gaussian():
  rng = np.random.default_rng(0)
  n = 40_000
  lengths = rng.integers(10, 1000, n)
  true = rng.uniform(0.05, 2, n)
  scale = 0.5 / np.sqrt(lengths / 10)  # errors shrink with length
  pred = true + rng.normal(size=n) * scale
  table = uncertainty.fit_table(pred[: n // 2], true[: n // 2], lengths[: n // 2])
  se = uncertainty.lookup(table, pred[n // 2 :], lengths[n // 2 :])
  assert 0.64 < uncertainty.coverage(pred[n // 2 :], true[n // 2 :], se) < 0.72  # Gaussian: 0.683
  assert 0.93 < uncertainty.coverage(pred[n // 2 :], true[n // 2 :], se, 2.0) < 0.97  # 0.954
  assert se[lengths[n // 2 :] < 20].mean() > 3 * se[lengths[n // 2 :] > 600].mean()


def test_pretraining_learns_and_writes_a_model_card(tmp_path):
  config = dataclasses.replace(
    pretrain.CONFIGS[1],
    steps=40,
    steps_per_epoch=10,
    batch_size=64,
    val_n=200,
    calib_n=200,
    test_n=200,
    curve_n=100,
  )
  work, dest, cache = tmp_path / "work", tmp_path / "shipped", tmp_path / "cache"
  out = pretrain.train(config, work, cache, progress=False)
  assert out["val_metric"][0] < out["initial_val_metric"][0]
  assert len(pretrain.snapshot_list(work)) == 4
  initial = Ensemble(infer.load(work).model, pretrain._train_config(config)).init(1, 1024).params
  exported = checkpoint.load_params(params_dir(work))
  assert any(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(initial), jax.tree.leaves(exported)))
  calibration = pretrain.calibrate(config, work, cache, progress=False)
  assert set(calibration["se"]) == {"1", "2", "3"}
  pretrain.ship(config, work, dest)
  summary = pretrain.card(config, work, dest=dest, cache=cache, progress=False)
  for name in ("MODEL_CARD.md", "card.json", "learning_curve.png", "pred_vs_true.png", "meta.json"):
    assert (dest / name).exists()
  assert [c["epoch"] for c in summary["learning_curve"]] == [0, 1, 2, 3]
  card = json.loads((dest / "card.json").read_text())
  assert card["scores"]["1"]["mae"][0]["n"] == 200 and np.isfinite(card["scores"]["3"]["mae"][0]["value"])


def test_the_demo_table_scores_the_shipped_models_beside_its_lstms(tmp_path):
  config = task1.Task1Config(
    lengths=(10, 20),
    train_n=1_000,
    test_n=200,
    folds=2,
    train=TrainConfig(batch_size=64, max_epochs=2),
    shipped=True,
    workers=1,
  )
  summary = task1.run(config, tmp_path, progress=False)
  header = summary["table"].splitlines()[0]
  for column in ("MAE LSTM", "MAE TAMSD fit", "MAE shipped model", "Task 2 micro-F1 shipped model"):
    assert column in header
  shipped = summary["table_columns"]["MAE shipped model"][0]
  assert shipped["n"] == 200 and shipped["value"] < summary["mae_tamsd"][0]["value"]
