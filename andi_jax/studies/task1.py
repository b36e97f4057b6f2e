"""Task 1 end to end with the seed-001 method: generate, train per length x fold, evaluate, report."""

import dataclasses
import json
import os
import time

import numpy as np

from andi_jax import metrics, pretrained
from andi_jax.data.recipe import Recipe, generate
from andi_jax.infer import Predictor
from andi_jax.methods.per_length import HNU_LENGTHS, train_lengths
from andi_jax.plotting import pyplot
from andi_jax.train.engine import TrainConfig


@dataclasses.dataclass(frozen=True)
class Task1Config:
  lengths: tuple[int, ...] = HNU_LENGTHS
  train_n: int = 20_000  # recipe trajectories; each length trains on their prefixes
  test_n: int = 5_000  # fresh held-out recipe set, lengths uniform in 10..999
  test_dim: int = 1
  folds: int = 5
  train: TrainConfig = TrainConfig()
  group_time_budget: float | None = None  # seconds of training per length group (None: to early stop)
  max_models: int = 40  # models per ensemble
  min_ratio: float = 0.75  # shortest/longest length within an ensemble (bounds padding waste)
  seed: int = 0
  workers: int | None = None
  shipped: bool = False  # also score the shipped Task 1 and Task 2 models on the held-out set


def pred_vs_true_png(path, true, pred, lengths, title):
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(5, 5))
  sc = ax.scatter(
    true + np.random.default_rng(0).uniform(-0.015, 0.015, len(true)),
    pred,
    c=lengths,
    s=4,
    alpha=0.5,
    cmap="viridis",
  )
  ax.plot([0, 2], [0, 2], "k--", lw=1)
  ax.set(xlabel="true α", ylabel="predicted α", title=title, xlim=(0, 2.05), ylim=(0, 2.05))
  fig.colorbar(sc, ax=ax, label="trajectory length")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def report_table(columns: dict[str, list[dict]]) -> str:
  """A markdown table of per-bucket rows (metrics.by_length), one column per entry of `columns`."""
  names = list(columns)
  lines = ["| length bucket | n | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
  for i, row in enumerate(columns[names[0]]):
    values = " | ".join(f"{columns[name][i]['value']:.3f}" for name in names)
    lines.append(f"| {row['bucket']} | {row['n']} | {values} |")
  return "\n".join(lines)


def run(config: Task1Config, workdir, progress: bool = True) -> dict:
  """Writes workdir/lstm (checkpoints), results.md, results.json, pred_vs_true.png; returns the summary."""
  os.makedirs(workdir, exist_ok=True)
  cache = os.path.join(workdir, "data")
  t0 = time.perf_counter()
  train = generate(
    Recipe(n=config.train_n, dim=1, seed=config.seed, keep=max(config.lengths)),
    workers=config.workers,
    cache_dir=cache,
    progress=progress,
  )
  test = generate(
    Recipe(n=config.test_n, dim=config.test_dim, seed=config.seed + 10_000),
    workers=config.workers,
    cache_dir=cache,
    progress=progress,
  )
  t_data = time.perf_counter() - t0

  ckpt = os.path.join(workdir, "lstm")
  t0 = time.perf_counter()
  rows = train_lengths(
    train.x[:, 0],
    train.alpha,
    config.lengths,
    ckpt,
    folds=config.folds,
    train_config=config.train,
    max_models=config.max_models,
    min_ratio=config.min_ratio,
    progress=progress,
    time_budget=config.group_time_budget,
  )
  t_train = time.perf_counter() - t0

  trajs = test.trajectories()
  t0 = time.perf_counter()
  pred = Predictor.load(ckpt).predict(trajs, progress=progress)
  t_pred = time.perf_counter() - t0
  classical = np.array([metrics.tamsd_alpha(t) for t in trajs])
  rows_model = metrics.by_length(metrics.mae, pred, test.alpha, test.length)
  rows_classical = metrics.by_length(metrics.mae, classical, test.alpha, test.length)
  columns = {"MAE LSTM": rows_model, "MAE TAMSD fit": rows_classical}
  if config.shipped:
    columns["MAE shipped model"] = metrics.by_length(
      metrics.mae, pretrained.load(1).predict(trajs), test.alpha, test.length
    )
    label = pretrained.load(2).predict(trajs).argmax(1)
    columns["Task 2 micro-F1 shipped model"] = metrics.by_length(
      metrics.f1_micro, label, test.model, test.length
    )
  table = report_table(columns)
  pred_vs_true_png(
    os.path.join(workdir, "pred_vs_true.png"),
    test.alpha,
    pred,
    test.length,
    f"HNU LSTM, {len(config.lengths)} lengths x {config.folds} folds",
  )
  summary = {
    "config": dataclasses.asdict(config),
    "seconds": {"data": t_data, "train": t_train, "predict": t_pred},
    "per_length": rows,
    "mae_model": rows_model,
    "mae_tamsd": rows_classical,
    "table_columns": columns,
  }
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(summary, f, indent=1)
  with open(os.path.join(workdir, "results.md"), "w") as f:
    f.write(
      f"# Task 1, HNU LSTM ({len(config.lengths)} lengths x {config.folds} folds, "
      f"{config.train_n} training trajectories, {config.test_n} held-out, {config.test_dim}D)\n\n"
      f"{table}\n\nData {t_data:.0f} s, training {t_train:.0f} s, prediction {t_pred:.1f} s.\n"
    )
  summary["table"] = table
  return summary
