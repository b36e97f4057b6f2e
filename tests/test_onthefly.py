"""Training on batches simulated inside the jitted step: the samplers' batches and the engine's loop."""

import functools

import jax
import numpy as np
import pytest

from andi_jax.data.recipe import allowed_alphas
from andi_jax.models import build_model
from andi_jax.train.engine import Ensemble, EnsembleData, TrainConfig, validation_only
from andi_jax.train.loop import fit
from andi_jax.train.samplers import bucket_sampler, per_length_sampler

GRID = np.unique(np.concatenate([allowed_alphas(m) for m in ("attm", "ctrw", "fbm", "lw", "sbm")]))


@functools.partial(jax.jit, static_argnums=(0, 2, 3, 4))
def _sample(sampler, key, width, member, rows):
  return sampler.view(sampler.simulate(key, width, rows), width, member)


def _standardised(x, length):
  for row, n in zip(np.asarray(x), np.asarray(length)):
    assert np.all(row[:-n] == 0)  # left padding
    assert abs(row[-n:].mean()) < 1e-4 and abs(row[-n:].std() - 1) < 1e-3


def test_per_length_sampler_gives_each_member_its_length():
  sampler = per_length_sampler(1, [10, 10, 25])
  assert sampler.widths == (25,) and sampler.padding_waste == pytest.approx(1 - 15 / 25)
  sample = lambda key, width, member, rows: _sample(sampler, key, width, member, rows)
  for member, n in enumerate([10, 10, 25]):
    x, length, y = sample(jax.random.key(3), 25, member, 16)
    assert x.shape == (16, 25) and np.all(np.asarray(length) == n)
    _standardised(x, length)
    steps = np.asarray(y) * 20  # the grid is 0.05 apart
    assert np.allclose(steps, np.rint(steps), atol=1e-4) and np.all(
      np.isin(np.rint(steps), np.rint(GRID * 20))
    )
  # a prefix of the same simulated trajectories: member 0's rows are member 2's first 10 points,
  # re-standardised
  short, _, y0 = sample(jax.random.key(3), 25, 0, 16)
  full, _, y2 = sample(jax.random.key(3), 25, 2, 16)
  head = np.asarray(full)[:, :10]
  head = (head - head.mean(1, keepdims=True)) / head.std(1, keepdims=True)
  np.testing.assert_allclose(np.asarray(short)[:, -10:], head, atol=2e-4)
  np.testing.assert_array_equal(y0, y2)


def test_bucket_sampler_lengths_follow_the_recipe():
  sampler = bucket_sampler(2, (32, 128, 1024))
  assert sampler.widths == (32, 128, 1024)
  np.testing.assert_allclose(sampler.weights, np.array([23, 96, 871]) / 990)  # 10..32, 33..128, 129..999
  for width, (lo, hi) in zip(sampler.widths, [(10, 32), (33, 128), (129, 999)]):
    x, length, y = _sample(sampler, jax.random.key(width), width, 0, 64)
    length = np.asarray(length)
    assert x.shape == (64, width) and lo <= length.min() and length.max() <= hi
    _standardised(x, length)
    assert set(np.asarray(y).tolist()) <= set(range(5)) and len(set(np.asarray(y).tolist())) >= 4


def test_fit_on_the_fly_learns_and_is_reproducible(tmp_path):
  model, _ = build_model("lstm", {"hidden": 16, "layers": 2, "dropout": 0.0, "outputs": 1})
  ens = Ensemble(model, TrainConfig(batch_size=64, max_epochs=3, steps_per_epoch=15, learning_rate=3e-3))
  sampler = per_length_sampler(1, [20, 20])
  val_x, val_len, val_y = _sample(per_length_sampler(1, [20]), jax.random.key(99), 20, 0, 256)
  train_idx, val_idx = validation_only(256, 2)
  data = EnsembleData(
    x=np.asarray(val_x)[None],
    length=np.asarray(val_len)[None],
    y=np.asarray(val_y),
    group=np.zeros(2, int),
    train_idx=train_idx,
    val_idx=val_idx,
  )
  untrained = ens.validate(ens.init(2, 20).params, data)[1]
  first = fit(ens, data, tmp_path / "a", progress=False, onthefly=sampler)
  maes = np.array([h["val_metric"] for h in first.history])  # (epochs, models)
  assert np.all(maes.min(0) < 0.85 * untrained)  # each model learns from generated data
  assert not np.allclose(maes[:, 0], maes[:, 1])  # members draw different data
  again = fit(ens, data, tmp_path / "b", progress=False, onthefly=sampler)
  for a, b in zip(jax.tree.leaves(first.state.params), jax.tree.leaves(again.state.params)):
    np.testing.assert_array_equal(a, b)


def test_devices_draw_different_rows():
  model, _ = build_model("lstm", {"hidden": 8, "layers": 1, "dropout": 0.0, "outputs": 1})
  ens = Ensemble(model, TrainConfig(batch_size=64))
  keys = jax.random.split(jax.random.key(5), 3)
  x, length, y = jax.jit(ens.draw, static_argnums=(0, 2))(per_length_sampler(1, [12, 12, 12]), keys, 12)
  assert x.shape == (3, 64, 12) and length.shape == y.shape == (3, 64)
  rows = np.asarray(x).reshape(3 * 64, 12)
  assert len(np.unique(rows, axis=0)) == 3 * 64  # no two devices or members repeat a trajectory


def test_members_of_a_stream_share_its_trajectories():
  model, _ = build_model("lstm", {"hidden": 8, "layers": 1, "dropout": 0.0, "outputs": 1})
  ens = Ensemble(model, TrainConfig(batch_size=64))
  keys = jax.random.split(jax.random.key(6), 4)
  # members g * 2 + s: lengths 10, 10, 20, 20 on streams 0, 1, 0, 1
  x, length, y = jax.jit(ens.draw, static_argnums=(0, 2))(
    per_length_sampler(1, [10, 10, 20, 20], streams=2), keys, 20
  )
  x, y = np.asarray(x), np.asarray(y)
  assert np.asarray(length)[:, 0].tolist() == [10, 10, 20, 20]
  np.testing.assert_array_equal(y[0], y[2])
  np.testing.assert_array_equal(y[1], y[3])
  assert not np.array_equal(x[0], x[1])
  head = x[2][:, :10]  # member 2's first 10 points, re-standardised, are member 0's rows
  np.testing.assert_allclose(
    x[0][:, -10:], (head - head.mean(1, keepdims=True)) / head.std(1, keepdims=True), atol=2e-4
  )
  with pytest.raises(ValueError, match="4 ensemble members cannot share 3 data streams"):
    ens.draw(per_length_sampler(1, [10] * 4, streams=3), keys, 10)


def test_fit_on_the_fly_needs_steps_per_epoch(tmp_path):
  model, _ = build_model("lstm", {"hidden": 8, "layers": 1, "dropout": 0.0, "outputs": 1})
  ens = Ensemble(model, TrainConfig(batch_size=8))
  data = EnsembleData(
    x=np.zeros((1, 8, 10), np.float32),
    length=np.full((1, 8), 10, np.int32),
    y=np.zeros(8, np.float32),
    group=np.zeros(1, int),
    train_idx=np.zeros((1, 0), int),
    val_idx=np.arange(8)[None],
  )
  with pytest.raises(ValueError, match="steps_per_epoch"):
    fit(ens, data, tmp_path, progress=False, onthefly=per_length_sampler(1, [10]))
