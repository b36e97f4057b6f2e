"""The seed-001 recipe: one model per trajectory length and fold, lengths grouped into ensembles.

Output directory layout (what `andi_jax.infer.Predictor.load` reads):
  meta.json              method, model name and config, folds, trained lengths, post-processing
  models/len_XXXX/       orbax checkpoint of the best-epoch parameters of that length's folds, stacked
  train/group_A-B/       resumable training state of the ensemble that trains lengths A..B
"""

import dataclasses
import os
import time

import jax
import numpy as np

from andi_jax.data.preprocess import left_pad, standardize
from andi_jax.models import build_model
from andi_jax.train import checkpoint
from andi_jax.train.engine import Ensemble, EnsembleData, TrainConfig, kfold_indices, validation_only
from andi_jax.train.loop import fit, require_trained
from andi_jax.train.samplers import per_length_sampler

# Seed 001's table of the 43 lengths with a model each.
HNU_LENGTHS = (
  10,
  15,
  20,
  25,
  30,
  40,
  45,
  50,
  55,
  60,
  70,
  80,
  90,
  100,
  105,
  110,
  115,
  120,
  125,
  150,
  175,
  200,
  225,
  250,
  275,
  300,
  325,
  350,
  375,
  400,
  425,
  450,
  475,
  500,
  550,
  600,
  650,
  700,
  750,
  800,
  850,
  900,
  950,
)
SCALE, CLIP = 1.011, (0.05, 2.0)  # seed 001's post-processing


def group_lengths(lengths, max_models: int, folds: int, min_ratio: float) -> list[tuple[int, ...]]:
  """Consecutive lengths that train together: at most max_models models, shortest/longest >= min_ratio.

  min_ratio bounds the padding waste of a group (each model pads to the group's longest length).
  """
  groups, current = [], []
  for length in sorted(lengths):
    if current and ((len(current) + 1) * folds > max_models or current[0] / length < min_ratio):
      groups.append(tuple(current))
      current = []
    current.append(length)
  return groups + [tuple(current)] if current else groups


def write_meta(outdir, model_name: str, model_config, folds: int, lengths, task: int = 1) -> None:
  checkpoint.write_meta(
    outdir,
    {
      "method": "hnu-per-length",
      "model": model_name,
      "model_config": dataclasses.asdict(model_config),
      "task": task,
      "folds": folds,
      "lengths": sorted(lengths),
      "scale": SCALE,
      "clip": list(CLIP),
    },
  )


def length_dir(outdir, length: int) -> str:
  return os.path.join(os.path.abspath(outdir), "models", f"len_{length:04d}")


def train_lengths(
  x_NxT: np.ndarray,
  alpha_N: np.ndarray,
  lengths,
  outdir,
  *,
  folds: int = 5,
  train_config: TrainConfig = TrainConfig(),
  model_name: str = "lstm",
  model_config=None,
  max_models: int = 40,
  min_ratio: float = 0.75,
  progress: bool = True,
  time_budget: float | None = None,
  onthefly: bool = False,
  streams: int | None = None,
  force: bool = False,
) -> list[dict]:
  """Trains folds x lengths models on prefixes of 1D recipe trajectories x (N, T); exports the best.

  Lengths already exported in outdir are skipped, so an interrupted run resumes where it stopped.
  onthefly: training batches are simulated inside the step (TrainConfig.steps_per_epoch steps an
  epoch); x then only validates, all of it for every model, and folds differ by their data streams:
  `streams` of them (None: one per fold), shared by the lengths trained together, whose models each
  take their prefix of the same simulated trajectories.
  Returns one summary row per trained length.
  """
  model, model_config = build_model(model_name, model_config)
  ensemble = Ensemble(model, train_config)
  train_idx, val_idx = (
    validation_only(len(alpha_N), folds)
    if onthefly
    else kfold_indices(len(alpha_N), folds, train_config.seed)
  )
  done = (
    set(checkpoint.read_meta(outdir)["lengths"])
    if os.path.exists(os.path.join(outdir, "meta.json"))
    else set()
  )
  rows = []
  groups = group_lengths([L for L in lengths if L not in done], max_models, folds, min_ratio)
  for group in groups:
    steps = max(group)
    xs, ls = zip(*(left_pad(standardize(x_NxT[:, :L]), steps) for L in group))
    data = EnsembleData(
      x=np.stack(xs),
      length=np.stack(ls),
      y=alpha_N.astype(np.float32),
      group=np.repeat(np.arange(len(group)), folds),
      train_idx=np.tile(train_idx, (len(group), 1)),
      val_idx=np.tile(val_idx, (len(group), 1)),
    )
    # members g * folds + f: fold f reads stream f % streams
    sampler = per_length_sampler(1, np.repeat(group, folds).tolist(), streams or folds) if onthefly else None
    start = time.perf_counter()
    workdir = os.path.join(outdir, "train", f"group_{group[0]}-{group[-1]}")
    result = fit(
      ensemble,
      data,
      workdir,
      progress=progress,
      time_budget=time_budget,
      desc=f"lengths {group[0]}-{group[-1]}",
      onthefly=sampler,
      force=force,
    )
    seconds = time.perf_counter() - start
    require_trained(result, f"lengths {group[0]}-{group[-1]}", workdir)
    initial = np.asarray(result.initial_metric).reshape(len(group), folds)
    best = np.asarray(result.state.best_metric).reshape(len(group), folds)
    epochs = len(result.history)
    for g, length in enumerate(group):
      params = jax.tree.map(lambda a: np.asarray(a)[g * folds : (g + 1) * folds], result.state.best_params)
      checkpoint.save_params(length_dir(outdir, length), params)
      done.add(length)
      write_meta(outdir, model_name, model_config, folds, done)
      rows.append(
        {
          "length": length,
          "val_mae": float(best[g].mean()),
          "initial_val_mae": float(initial[g].mean()),
          "epochs": epochs,
          "group": f"{group[0]}-{group[-1]}",
          "padding_waste": sampler.padding_waste if onthefly else data.padding_waste,
          "seconds": seconds,
        }
      )
  return rows
