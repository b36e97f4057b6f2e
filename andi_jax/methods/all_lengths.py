"""One model for every trajectory length (the ConvTransformer's way; an LSTM can train so too), per fold.

Rows of all lengths train together; each batch holds one length bucket (see EnsembleData.widths), so a
few shapes compile and the padding stays bounded. Output directory (what `andi_jax.infer.load` reads):
  meta.json        method "all-lengths", task, model name and config, folds, bucket widths
  models/all/      orbax checkpoint of the best-epoch parameters of the folds, stacked
  train/           resumable training state of the ensemble
"""

import dataclasses
import os
import time

import jax
import numpy as np

from andi_jax.data.preprocess import left_pad, standardize
from andi_jax.data.recipe import CLASSES
from andi_jax.models import build_model
from andi_jax.train import checkpoint
from andi_jax.train.engine import Ensemble, EnsembleData, TrainConfig, kfold_indices, validation_only
from andi_jax.train.loop import fit, require_trained
from andi_jax.train.samplers import bucket_sampler

# Four training shapes: each costs a compilation of the training and of the validation step (tens of
# seconds on a CPU), against about 30 % of the steps on padding for lengths uniform in 10..999.
WIDTHS = (32, 128, 512, 1024)


def prepare(trajectories_1d, widths=WIDTHS) -> tuple[np.ndarray, np.ndarray]:
  """Ragged 1D series -> standardised rows left-padded to the widest bucket, and their lengths."""
  rows = [standardize(np.asarray(r)[None])[0] for r in trajectories_1d]
  return left_pad(rows, max(widths[-1], max(len(r) for r in rows)))


def params_dir(outdir) -> str:
  return os.path.join(os.path.abspath(outdir), "models", "all")


def train_all_lengths(
  x_NxT: np.ndarray,
  length_N: np.ndarray,
  y_N: np.ndarray,
  outdir,
  *,
  task: int,
  model_name: str = "conv_transformer",
  model_config=None,
  folds: int = 5,
  train_config: TrainConfig = TrainConfig(),
  widths=WIDTHS,
  progress: bool = True,
  time_budget: float | None = None,
  onthefly: bool = False,
  streams: int | None = None,
  force: bool = False,
  on_epoch=None,
) -> dict:
  """Trains `folds` models on prepared rows (see `prepare`) and exports the best epoch of each.

  task 1: y is alpha (regression); task 2: y is the model label (classification, 5 classes).
  A second call with the same outdir resumes the interrupted training. onthefly: training batches are
  simulated inside the step (lengths 10..999, TrainConfig.steps_per_epoch steps an epoch); the rows
  given all validate every model, and the "folds" are models trained on `streams` data streams (None:
  one per fold; 1: all train on the same fresh trajectories, simulated once a step). on_epoch: see fit.
  """
  if task not in (1, 2):
    raise ValueError(f"task must be 1 (alpha) or 2 (model), got {task}")
  if train_config.task != task:
    raise ValueError(f"task {task} needs TrainConfig(task={task}), got task={train_config.task!r}")
  outputs = 1 if task == 1 else len(CLASSES)
  model_config = dataclasses.replace(build_model(model_name, model_config)[1], outputs=outputs)
  model, _ = build_model(model_name, model_config)
  train_idx, val_idx = (
    validation_only(len(y_N), folds) if onthefly else kfold_indices(len(y_N), folds, train_config.seed)
  )
  data = EnsembleData(
    x=x_NxT[None],
    length=length_N[None].astype(np.int32),
    y=y_N.astype(np.float32 if task == 1 else np.int32),
    group=np.zeros(folds, int),
    train_idx=train_idx,
    val_idx=val_idx,
    widths=tuple(w for w in widths if w <= x_NxT.shape[1]),
  )
  sampler = bucket_sampler(task, data.widths, streams=streams) if onthefly else None
  start = time.perf_counter()
  result = fit(
    Ensemble(model, train_config),
    data,
    os.path.join(outdir, "train"),
    progress=progress,
    time_budget=time_budget,
    desc=f"{model_name} task {task}",
    onthefly=sampler,
    force=force,
    on_epoch=on_epoch,
  )
  seconds = time.perf_counter() - start
  require_trained(result, f"{model_name} task {task}", os.path.join(outdir, "train"))
  checkpoint.save_params(params_dir(outdir), jax.tree.map(np.asarray, result.state.best_params))
  meta = {
    "method": "all-lengths",
    "task": task,
    "model": model_name,
    "model_config": dataclasses.asdict(model_config),
    "folds": folds,
    "widths": list(data.widths),
    "classes": list(CLASSES) if task == 2 else None,
    "data": "onthefly" if onthefly else "stored",
  }
  checkpoint.write_meta(outdir, meta)
  return {
    "val_metric": np.asarray(result.state.best_metric).tolist(),
    "initial_val_metric": result.initial_metric,
    "epochs": len(result.history),
    "steps": result.steps,
    "seconds": seconds,
    "history": result.history,
    "padding_waste": sampler.padding_waste if onthefly else data.padding_waste,
  }
