import dataclasses
import os
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn

from andi_jax.methods.per_length import train_lengths
from andi_jax.models import build_model
from andi_jax.train.engine import Ensemble, EnsembleData, TrainConfig, kfold_indices
from andi_jax.train.loop import ConfigMismatchError, NonFiniteError, fit

SMALL = {"hidden": 8, "layers": 2, "dropout": 0.2, "outputs": 1}


def _ensemble(**kw):
  model, _ = build_model("lstm", kw.pop("model", SMALL))
  return Ensemble(model, TrainConfig(**{"batch_size": 128, "max_epochs": 3, "checkpoint_every": 3, **kw}))


def _without_seconds(history):
  """A history without its wall times, which differ between runs."""
  return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def _data(x, y, folds=3):
  tr, va = kfold_indices(len(y), folds, 0)
  return EnsembleData(
    x=x[None],
    length=np.full((1, len(y)), x.shape[1], np.int32),
    y=y,
    group=np.zeros(folds, int),
    train_idx=tr,
    val_idx=va,
  )


def test_cosine_schedule_replaces_plateau_and_ends_at_decay_steps(toy_alpha_data):
  """decay_steps: no plateau reduction or early stop however validation goes, and no update after the
  schedule reaches zero; the run's history records its wall time."""
  x, y = toy_alpha_data
  ens = _ensemble(decay_steps=8, steps_per_epoch=4, max_epochs=4, max_reductions=0, plateau_patience=0)
  snapshots = []
  result = fit(
    ens,
    _data(x, y),
    progress=False,
    on_epoch=lambda s, e: snapshots.append((jax.tree.map(np.array, s.params), e)),
  )
  assert len(result.history) == 4 and not np.any(np.asarray(result.state.stopped))
  assert all(h["lr_scale"] == [1.0, 1.0, 1.0] for h in result.history)
  after_schedule, last = jax.tree.leaves(snapshots[1][0]), jax.tree.leaves(snapshots[3][0])
  assert all(np.array_equal(a, b) for a, b in zip(after_schedule, last))
  initial = jax.tree.leaves(ens.init(3, x.shape[1]).params)
  assert any(not np.allclose(a, b) for a, b in zip(initial, after_schedule))
  seconds = [e["seconds"] for _, e in snapshots]
  assert seconds == sorted(seconds) and seconds[0] > 0


def test_kfold_disjoint_80_20():
  tr, va = kfold_indices(1000, 5, 0)
  assert tr.shape == (5, 800) and va.shape == (5, 200)
  for k in range(5):
    assert not set(tr[k]) & set(va[k])
  assert sorted(np.concatenate(list(va))) == list(range(1000))


def test_plateau_and_early_stop_are_per_model():
  ens = _ensemble()
  state = ens.init(2, 10)
  # Model 0 never improves on its first loss; model 1 improves every epoch.
  scales, stopped = [], []
  for epoch in range(6):
    loss = jnp.array([1.0, 1.0 / (epoch + 1)])
    state = ens.end_epoch(state, loss, loss, epoch)
    scales.append(np.asarray(state.plateau.scale))
    stopped.append(np.asarray(state.stopped))
  # Seed 001: lr / 5 after 2 epochs without improvement; stop when reductions exceed 1.
  np.testing.assert_allclose([s[0] for s in scales], [1, 1, 0.2, 0.2, 0.04, 0.04], rtol=1e-6)
  assert [bool(s[0]) for s in stopped] == [False] * 4 + [True] * 2
  assert all(s[1] == 1 for s in scales) and not any(s[1] for s in stopped)
  assert list(np.asarray(state.best_epoch)) == [0, 5]


def test_stopped_model_does_not_change(toy_alpha_data):
  x, y = toy_alpha_data
  ens = _ensemble()
  state = ens.init(2, 20)
  state = state.replace(stopped=jnp.array([True, False]))
  before = jax.tree.map(np.asarray, state.params)
  batch = ens.batch(_data(x, y, 2), np.stack([np.arange(128), np.arange(128, 256)]), 20)
  state, _ = ens.train_step(state, *batch, jax.random.split(jax.random.key(0), 2))
  after = jax.tree.map(np.asarray, state.params)
  for b, a in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[1], b[1])


def test_fit_learns_and_keeps_best_epoch(toy_alpha_data):
  x, y = toy_alpha_data
  result = fit(_ensemble(max_epochs=4, learning_rate=1e-2), _data(x, y), progress=False)
  metrics = np.array([h["val_metric"] for h in result.history])  # (epochs, models)
  np.testing.assert_array_equal(np.asarray(result.state.best_epoch), metrics.argmin(0))
  np.testing.assert_allclose(np.asarray(result.state.best_metric), metrics.min(0), rtol=1e-6)
  assert metrics[-1].mean() < 0.45  # predicting the mean alpha gives 0.45


class Killed(Exception):
  pass


def test_resume_after_kill_matches_uninterrupted_run(tmp_path, toy_alpha_data):
  x, y = toy_alpha_data
  data = _data(x, y)
  ens = _ensemble()
  full = fit(ens, data, tmp_path / "full", progress=False)

  def kill(step):
    if step == 11:  # 6 steps per epoch: dies in epoch 1 after its mid-epoch save at step 9
      raise Killed

  with pytest.raises(Killed):
    fit(ens, data, tmp_path / "run", progress=False, callback=kill)
  resumed = fit(ens, data, tmp_path / "run", progress=False)
  assert resumed.steps < full.steps
  for a, b in zip(jax.tree.leaves(full.state), jax.tree.leaves(resumed.state)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert _without_seconds(resumed.history) == _without_seconds(full.history)


def test_classification_task_runs_and_learns():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 2, 1280).astype(np.int32)
  x = np.cumsum(rng.normal(size=(1280, 20)) + 0.8 * labels[:, None], axis=1).astype(np.float32)
  x = (x - x.mean(1, keepdims=True)) / (x.std(1, keepdims=True))
  ens = _ensemble(task=2, model={**SMALL, "outputs": 2}, max_epochs=3, learning_rate=1e-2)
  result = fit(ens, _data(x, labels), progress=False)
  assert np.asarray(result.state.best_metric).max() < 0.25  # error rate; chance is 0.5


def test_multi_length_group_padding_waste():
  x = np.zeros((2, 10, 40), np.float32)
  length = np.stack([np.full(10, 20), np.full(10, 40)]).astype(np.int32)
  data = EnsembleData(
    x=x,
    length=length,
    y=np.zeros(10, np.float32),
    group=np.array([0, 0, 1, 1]),
    train_idx=np.zeros((4, 8), int),
    val_idx=np.zeros((4, 2), int),
  )
  assert data.padding_waste == pytest.approx(0.25)


def _bucketed(n=3000, folds=2):
  rng = np.random.default_rng(1)
  length = rng.integers(10, 65, n).astype(np.int32)
  x = np.zeros((1, n, 64), np.float32)
  for i, L in enumerate(length):
    x[0, i, 64 - L :] = rng.normal(size=L)
  tr, va = kfold_indices(n, folds, 0)
  return EnsembleData(
    x=x,
    length=length[None],
    y=rng.normal(size=n).astype(np.float32),
    group=np.zeros(folds, int),
    train_idx=tr,
    val_idx=va,
    widths=(16, 32, 64),
  )


def test_buckets_batch_one_width_each_and_bound_waste():
  data = _bucketed()
  ens = _ensemble()
  steps = ens.epoch_batches(data, 0)
  assert {w for w, _ in steps} == {16, 32, 64}
  for width, idx in steps:
    assert idx.shape == (2, 128)
    rows = data.length[0, idx]
    assert rows.max() <= width and (width == 16 or rows.min() > width // 2)
    for m in range(2):  # each model draws from its own fold's training rows only
      assert set(idx[m]) <= set(data.train_idx[m])
  # uniform lengths 10..64: padded to 64 wastes ~41 %, the three buckets ~20 %
  waste_one = 1 - data.length.mean() / 64
  assert data.padding_waste < 0.6 * waste_one
  assert ens.epoch_batches(data, 0)[3][1].tolist() == steps[3][1].tolist()  # a function of (seed, epoch)
  assert len(_ensemble(steps_per_epoch=5).epoch_batches(data, 0)) == 5
  with pytest.raises(ValueError, match="widest bucket"):
    EnsembleData(
      x=data.x,
      length=data.length,
      y=data.y,
      group=data.group,
      train_idx=data.train_idx,
      val_idx=data.val_idx,
      widths=(16, 32),
    )


def test_bucketed_validation_equals_full_width():
  data = _bucketed(n=600)
  ens = _ensemble()
  params = ens.init(2, 64).params
  full = dataclasses.replace(data, widths=None)
  for a, b in zip(ens.validate(params, data), ens.validate(params, full)):
    np.testing.assert_allclose(a, b, rtol=1e-5)


def test_map_and_vmap_ensembles_agree(toy_alpha_data):
  x, y = toy_alpha_data
  data = _data(x, y, 2)
  results = []
  for mode in ("map", "vmap"):
    ens = _ensemble(ensemble=mode)
    state = ens.init(2, 20)
    batch = ens.batch(data, np.stack([np.arange(128), np.arange(128, 256)]), 20)
    state, loss = ens.train_step(state, *batch, jax.random.split(jax.random.key(0), 2))
    results.append((state.params, loss))
  for other in results[1:]:
    for a, b in zip(jax.tree.leaves(results[0]), jax.tree.leaves(other)):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_step_on_sharded_rows_equals_whole_batch_step(toy_alpha_data):
  # Without dropout, the devices' gradients on their own rows, averaged, must give each model the step
  # that its whole batch gives it on one device.
  x, y = toy_alpha_data
  ens = _ensemble(model={**SMALL, "dropout": 0.0})
  state = ens.init(2, 20)
  x_MxB, length_MxB, y_MxB = ens.batch(_data(x, y, 2), np.stack([np.arange(128), np.arange(128, 256)]), 20)
  keys = jax.random.split(jax.random.key(0), 2)
  expected = []
  for m in range(2):
    params, opt_state = jax.tree.map(lambda a: np.asarray(a[m]), (state.params, state.opt_state))
    x_B, length_B, y_B = (np.asarray(a[m]) for a in (x_MxB, length_MxB, y_MxB))
    loss, grads = jax.value_and_grad(
      lambda p: jnp.mean(
        (ens.model.apply({"params": p}, x_B, length_B, train=True, rngs={"dropout": keys[m]})[:, 0] - y_B)
        ** 2
      )
    )(params)
    updates, _ = ens.tx.update(grads, opt_state, params)
    expected.append((loss, optax.apply_updates(params, updates)))
  state, loss = ens.train_step(state, x_MxB, length_MxB, y_MxB, keys)
  assert ens.mesh.size == jax.device_count()  # the rows are split over every device
  for m, (loss_m, params_m) in enumerate(expected):
    np.testing.assert_allclose(loss[m], loss_m, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(params_m)):
      np.testing.assert_allclose(np.asarray(a[m]), b, rtol=1e-4, atol=1e-6)


class _NaNBeyondWidth(nn.Module):
  """Mean of a row's points, NaN where its length exceeds the row's width (as a long row cut short
  gives a ConvTransformer): validation must mask such padded rows, not multiply them by zero."""

  @nn.compact
  def __call__(self, x, length, train=False):
    bias = self.param("bias", nn.initializers.zeros, (1,))
    mean = x.sum(-1) / length
    return jnp.where(length > x.shape[-1], jnp.nan, mean)[:, None] + bias


def test_validation_masks_padded_rows_whatever_their_output():
  data = _bucketed(n=600)
  data.length[0, 0] = (
    64  # padding used to repeat row 0 in every bucket, here a row too long for the narrow ones
  )
  ens = Ensemble(_NaNBeyondWidth(), TrainConfig(batch_size=128))
  params = ens.init(2, 64).params
  bucketed, full = ens.validate(params, data), ens.validate(params, dataclasses.replace(data, widths=None))
  for a, b in zip(bucketed, full):
    assert np.all(np.isfinite(a))
    np.testing.assert_allclose(a, b, rtol=1e-5)


def test_resume_with_another_configuration_names_the_fields(tmp_path, toy_alpha_data):
  x, y = toy_alpha_data
  data = _data(x, y)
  fit(_ensemble(max_epochs=1), data, tmp_path, progress=False)
  changed = _ensemble(max_epochs=2, learning_rate=5e-3, plateau_patience=3)
  with pytest.raises(
    ConfigMismatchError,
    match=r"train\.learning_rate: 0\.001 -> 0\.005; "
    r"train\.plateau_patience: 2 -> 3",
  ):
    fit(changed, data, tmp_path, progress=False)
  assert len(fit(_ensemble(max_epochs=2), data, tmp_path, progress=False).history) == 2  # max_epochs may grow
  assert len(fit(changed, data, tmp_path, progress=False, force=True).history) == 2


def test_non_finite_training_loss_stops_the_run(tmp_path, toy_alpha_data):
  x, y = toy_alpha_data
  y = y.copy()
  y[3] = np.inf  # a target that makes the loss of the batches holding it infinite
  data = _data(x, y)
  data.val_idx[data.val_idx == 3] = 4  # the row trains two of the models and validates none
  with pytest.raises(NonFiniteError, match=r"training loss not finite at epoch 0, step \d+"):
    fit(_ensemble(), data, tmp_path, progress=False)
  assert not any(p.name.isdigit() for p in tmp_path.iterdir())  # no checkpoint holds the non-finite state


def test_no_finished_epoch_exports_nothing(tmp_path):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(512, 20)).astype(np.float32)
  with pytest.raises(RuntimeError, match="finished no epoch"):
    train_lengths(
      x,
      rng.uniform(0, 2, 512).astype(np.float32),
      [20],
      tmp_path,
      folds=2,
      model_config=SMALL,
      train_config=TrainConfig(batch_size=64),
      time_budget=0.0,
      progress=False,
    )
  assert not (tmp_path / "models").exists() and (tmp_path / "train").exists()


_KILLED_IN_SAVE = """
import os, signal, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import conftest, test_engine
rename, commits = os.rename, []

def killing_rename(src, dst):  # orbax commits a save by renaming its temporary directory
  if "orbax-checkpoint-tmp" in str(src) and os.path.basename(dst).isdigit():
    commits.append(dst)
    if len(commits) == int(sys.argv[3]):
      os.kill(os.getpid(), signal.SIGKILL)  # the save's files are written, its commit is not
  rename(src, dst)

os.rename = killing_rename
with np.load(os.path.join(sys.argv[2], "data.npz")) as f:
  data = test_engine._data(f["x"], f["y"])
test_engine.fit(test_engine._ensemble(), data, os.path.join(sys.argv[2], "run"), progress=False)
"""


def test_kill_during_a_save_resumes_from_the_last_complete_one(tmp_path, toy_alpha_data):
  x, y = toy_alpha_data
  np.savez(tmp_path / "data.npz", x=x, y=y)
  proc = subprocess.run(
    [sys.executable, "-c", _KILLED_IN_SAVE, os.path.dirname(__file__), str(tmp_path), "3"],
    capture_output=True,
    text=True,
  )
  assert proc.returncode == -signal.SIGKILL, proc.stderr
  assert any("orbax-checkpoint-tmp" in p.name for p in (tmp_path / "run").iterdir())  # the torn save is there
  ens = _ensemble()
  resumed = fit(ens, _data(x, y), tmp_path / "run", progress=False)
  full = fit(ens, _data(x, y), tmp_path / "full", progress=False)
  assert 0 < resumed.steps < full.steps
  for a, b in zip(jax.tree.leaves(full.state), jax.tree.leaves(resumed.state)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert _without_seconds(resumed.history) == _without_seconds(full.history)
