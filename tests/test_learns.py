"""Every training path learns: on small data each family, in each training mode, ends with a validation
metric below that of its initial parameters and exports parameters other than the initial ones."""

import jax
import numpy as np
import pytest

from andi_jax.data.simulate import DeviceRecipe, sample_recipe
from andi_jax.methods.all_lengths import params_dir, train_all_lengths
from andi_jax.methods.per_length import length_dir, train_lengths
from andi_jax.models import build_model
from andi_jax.train import checkpoint
from andi_jax.train.engine import Ensemble, TrainConfig

SMALL = {
  "lstm": {"hidden": 16, "layers": 2, "dropout": 0.0},
  "conv_transformer": {"width": 16, "heads": 2, "blocks": 1, "mlp": 32, "dropout": 0.0},
  "resnet": {"blocks": (1, 1), "width": 8, "stem_kernel": 7, "kernel": 5, "norm_groups": 4},
}
FOLDS, WIDTHS = 2, (32, 64)


def _recipe(length, n=2048, seed=0):
  return jax.device_get(sample_recipe(jax.random.key(seed), n, DeviceRecipe(length=length)))


def _config(task: int, **kw):
  return TrainConfig(task=task, batch_size=64, learning_rate=3e-3, max_epochs=3, checkpoint_every=1000, **kw)


def _initial_params(name, model_config, config, steps):
  model, _ = build_model(name, model_config)
  return jax.device_get(Ensemble(model, config).init(FOLDS, steps).params)


def _assert_learned(initial_metric, val_metric, exported, initial):
  assert np.all(np.isfinite(val_metric)) and np.all(np.asarray(val_metric) < np.asarray(initial_metric))
  for m in range(FOLDS):
    assert any(
      not np.array_equal(a[m], b[m]) for a, b in zip(jax.tree.leaves(exported), jax.tree.leaves(initial))
    )


@pytest.mark.parametrize("data", ["stored", "onthefly"])
@pytest.mark.parametrize("family", ["lstm", "conv_transformer", "resnet"])
def test_per_length_learns(tmp_path, family, data):
  b = _recipe(32)
  onthefly = data == "onthefly"
  config = _config(1, steps_per_epoch=12 if onthefly else None)
  model_config = {**SMALL[family], "outputs": 1}
  (rows,) = train_lengths(
    b.x,
    b.alpha,
    [32],
    tmp_path,
    folds=FOLDS,
    train_config=config,
    model_name=family,
    model_config=model_config,
    progress=False,
    onthefly=onthefly,
  )
  exported = checkpoint.load_params(length_dir(tmp_path, 32))
  _assert_learned(
    rows["initial_val_mae"], rows["val_mae"], exported, _initial_params(family, model_config, config, 32)
  )


@pytest.mark.parametrize("data", ["stored", "onthefly"])
@pytest.mark.parametrize("family, task", [("lstm", 1), ("conv_transformer", 1), ("resnet", 2)])
def test_all_lengths_learns(tmp_path, family, task, data):
  b = _recipe((10, 64))
  onthefly = data == "onthefly"
  config = _config(task, steps_per_epoch=12 if onthefly else None)
  out = train_all_lengths(
    b.x,
    b.length,
    b.alpha if task == 1 else b.model,
    tmp_path,
    task=task,
    model_name=family,
    model_config=SMALL[family],
    folds=FOLDS,
    train_config=config,
    widths=WIDTHS,
    progress=False,
    onthefly=onthefly,
  )
  model_config = {**SMALL[family], "outputs": 1 if task == 1 else 5}
  _assert_learned(
    out["initial_val_metric"],
    out["val_metric"],
    checkpoint.load_params(params_dir(tmp_path)),
    _initial_params(family, model_config, config, 64),
  )
