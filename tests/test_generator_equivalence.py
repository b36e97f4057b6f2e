"""The generator-equivalence experiment's code path, at toy size."""

import dataclasses
import json

import numpy as np
import pytest

from andi_jax.data.recipe import Dataset
from andi_jax.studies import generator_equivalence as ge
from andi_jax.train.engine import TrainConfig

TINY = ge.EquivalenceConfig(
  length=20,
  T=60,
  train_n=48,
  test_n=30,
  seeds=(0,),
  model="lstm",
  model_config=(("hidden", 8), ("layers", 1)),
  train=TrainConfig(batch_size=8, steps_per_epoch=2, max_epochs=1, max_reductions=1_000),
  chunk=24,
  workers=1,
)


def test_training_sets_share_format(tmp_path):
  """Both sources give rows as training reads them: left-padded, standardised over the real points."""
  for config in (TINY, dataclasses.replace(TINY, length=None)):
    sets = {"jax": ge.jax_training_set(config, 0), "andi": ge.andi_training_set(config, 0, tmp_path)}
    for name, s in sets.items():
      assert s["x"].dtype == np.float32 and s["x"].shape[0] == config.train_n, name
      assert s["x"].shape[1] == (config.length or ge.WIDTHS[-1]), name
      for row, length in zip(s["x"][:5], s["length"][:5]):
        assert np.all(row[: len(row) - length] == 0)
        np.testing.assert_allclose([row[-length:].mean(), row[-length:].std()], [0, 1], atol=1e-4)
    assert sets["jax"]["model"].dtype == sets["andi"]["model"].dtype == np.int32


def test_run_writes_report(tmp_path):
  """Task 2 end to end (one training per source: each compiles); Task 1's scoring below."""
  result = ge.run(dataclasses.replace(TINY, tasks=(2,)), tmp_path / "work", tmp_path / "out", progress=False)
  assert [(r["task"], r["source"], r["steps"]) for r in result["runs"]] == [(2, "andi", 2), (2, "jax", 2)]
  assert all(0 <= r["f1_macro"] <= 1 and 0 <= r["f1_micro"] <= 1 for r in result["runs"])
  summary = json.loads((tmp_path / "out" / "results.json").read_text())["summaries"]["2"]
  assert summary["delta"] == [summary["jax"]["values"][0] - summary["andi"]["values"][0]]
  assert "| 0 |" in (tmp_path / "out" / "results.md").read_text()


def test_score_task1_per_model():
  test = Dataset(
    x=np.zeros((4, 1, 10), np.float32),
    alpha=np.float32([0.5, 1.0, 1.5, 1.0]),
    model=np.int32([0, 0, 3, 4]),
    noise=np.zeros(4, np.float32),
    length=np.full(4, 10, np.int32),
  )
  out = ge.score(1, np.array([0.5, 1.2, 1.0, 1.0]), test)
  assert out["mae"] == pytest.approx(0.7 / 4)
  assert out["mae_by_model"] == pytest.approx({"attm": 0.1, "lw": 0.5, "sbm": 0.0})
