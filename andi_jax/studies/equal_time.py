"""All-length models of Task 1 or Task 2 trained for the same wall-clock budget, scored per length bucket.

The ConvTransformer (seed 000) against the seed-001 LSTM used as one all-length model (3x64, the
regression head for Task 1, five outputs for Task 2): same recipe data, same folds, same batches, same
budget. Task 1 adds the classical estimate (log-log fit of the time-averaged MSD) as a column.

The CPU size trains and tests on lengths 10-50, the range the comparison is about: on 2 cores a
budget of minutes buys only a few dozen steps of 512 trajectories of up to 1000 points, which teaches
neither model anything; the GPU size covers the recipe's 10-999.
"""

import dataclasses
import json
import os
import time

import numpy as np

from andi_jax import infer, metrics
from andi_jax.data.recipe import CLASSES, Recipe, generate
from andi_jax.methods.all_lengths import WIDTHS, prepare, train_all_lengths
from andi_jax.plotting import pyplot
from andi_jax.studies.task1 import pred_vs_true_png
from andi_jax.train.engine import TrainConfig

LABELS = {"conv_transformer": "ConvTransformer", "lstm": "LSTM"}


@dataclasses.dataclass(frozen=True)
class EqualTimeConfig:
  task: int = 1
  models: tuple[tuple[str, dict], ...] = (("conv_transformer", {}), ("lstm", {}))
  train_n: int = 60_000  # recipe trajectories, lengths uniform in 10..max_length
  test_n: int = 10_000  # fresh held-out recipe set, the same lengths
  max_length: int = 999
  widths: tuple[int, ...] = WIDTHS  # training length buckets (the last holds max_length)
  folds: int = 5
  time_budget: float = 600.0  # seconds of training per model family, validation included
  train: TrainConfig = TrainConfig(steps_per_epoch=100)
  seed: int = 0
  workers: int | None = None


def confusion_png(path, matrix, title):
  plt = pyplot()
  norm = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
  fig, ax = plt.subplots(figsize=(4.6, 4))
  im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
  for i in range(len(CLASSES)):
    for j in range(len(CLASSES)):
      ax.text(
        j, i, f"{norm[i, j]:.2f}", ha="center", va="center", color="white" if norm[i, j] > 0.5 else "black"
      )
  ax.set(
    xticks=range(len(CLASSES)),
    yticks=range(len(CLASSES)),
    xticklabels=CLASSES,
    yticklabels=CLASSES,
    xlabel="predicted",
    ylabel="true",
    title=title,
  )
  fig.colorbar(im, ax=ax)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def table(columns: dict[str, list[dict]], metric_name: str) -> str:
  names = list(columns)
  first = columns[names[0]]
  lines = [
    "| length bucket | n | " + " | ".join(f"{metric_name} {n}" for n in names) + " |",
    "|---|---|" + "---|" * len(names),
  ]
  for i, row in enumerate(first):
    if row["n"] == 0:  # a bucket beyond the experiment's lengths
      continue
    lines.append(
      f"| {row['bucket']} | {row['n']} | " + " | ".join(f"{columns[n][i]['value']:.3f}" for n in names) + " |"
    )
  return "\n".join(lines)


def datasets(config: EqualTimeConfig, cache, progress: bool = True):
  """The experiment's recipe training set and its held-out set (same lengths, independent seed)."""
  recipe = dict(dim=1, max_length=config.max_length, keep=config.max_length)
  return [
    generate(Recipe(n=n, seed=seed, **recipe), workers=config.workers, cache_dir=cache, progress=progress)
    for n, seed in ((config.train_n, config.seed), (config.test_n, config.seed + 10_000))
  ]


def run(config: EqualTimeConfig, workdir, progress: bool = True, cache=None) -> dict:
  """Trains each model family for config.time_budget seconds; writes results.md/json and PNGs."""
  os.makedirs(workdir, exist_ok=True)
  train, test = datasets(config, cache or os.path.join(workdir, "data"), progress)
  x, length = prepare([t[0] for t in train.trajectories()], config.widths)
  y, truth = (train.alpha, test.alpha) if config.task == 1 else (train.model, test.model)
  train_config = dataclasses.replace(config.train, task=config.task, seed=config.seed)
  metric, metric_name = (metrics.mae, "MAE") if config.task == 1 else (metrics.f1_micro, "F1")
  trajs = test.trajectories()

  columns, runs = {}, {}
  for name, model_config in config.models:
    label = LABELS.get(name, name)
    ckpt = os.path.join(workdir, name)
    out = train_all_lengths(
      x,
      length,
      y,
      ckpt,
      task=config.task,
      model_name=name,
      model_config=model_config,
      folds=config.folds,
      train_config=train_config,
      widths=config.widths,
      progress=progress,
      time_budget=config.time_budget,
    )
    t0 = time.perf_counter()
    pred = infer.load(ckpt).predict(trajs, progress=progress)
    t_pred = time.perf_counter() - t0
    if config.task == 2:
      confusion_png(
        os.path.join(workdir, f"confusion_{name}.png"),
        metrics.confusion(pred.argmax(1), truth, 5),
        f"{label}, Task 2, {config.time_budget:.0f} s",
      )
      pred = pred.argmax(1)
    else:
      pred_vs_true_png(
        os.path.join(workdir, f"pred_vs_true_{name}.png"),
        truth,
        pred,
        test.length,
        f"{label}, Task 1, {config.time_budget:.0f} s",
      )
    columns[label] = metrics.by_length(metric, pred, truth, test.length)
    runs[label] = {
      "train_seconds": out["seconds"],
      "steps": out["steps"],
      "epochs": out["epochs"],
      "trajectories_seen": out["steps"] * train_config.batch_size * config.folds,
      "padding_waste": out["padding_waste"],
      "predict_seconds": t_pred,
      "val_metric": out["val_metric"],
    }
  if config.task == 1:
    classical = np.array([metrics.tamsd_alpha(t) for t in trajs])
    columns["TAMSD fit"] = metrics.by_length(metrics.mae, classical, truth, test.length)

  text = table(columns, metric_name)
  runs_text = "\n".join(
    f"- {label}: {r['steps']} steps ({r['trajectories_seen']:,} trajectories over {config.folds} folds) "
    f"in {r['train_seconds']:.0f} s, padding waste {r['padding_waste']:.0%}, prediction of "
    f"{config.test_n} trajectories {r['predict_seconds']:.1f} s"
    for label, r in runs.items()
  )
  title = "Task 1 (alpha), MAE" if config.task == 1 else "Task 2 (diffusion model), micro-F1"
  with open(os.path.join(workdir, "results.md"), "w") as f:
    f.write(
      f"# {title} at equal training time ({config.time_budget:.0f} s per model, {config.folds} folds)\n\n"
      f"{config.train_n} recipe training trajectories (1D, lengths 10-{config.max_length}), "
      f"{config.test_n} held out (same lengths).\n\n"
      f"{text}\n\n{runs_text}\n"
    )
  summary = {"config": dataclasses.asdict(config), "runs": runs, "columns": columns, "table": text}
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(summary, f, indent=1)
  return summary


def scales(task: int) -> dict[str, EqualTimeConfig]:
  """The experiment scripts' sizes: a CPU default (2 x 10 min on 2 cores) and a GPU-sized run."""
  return {
    "cpu": EqualTimeConfig(
      task=task, train_n=200_000, test_n=10_000, max_length=50, widths=(32, 64), time_budget=600.0
    ),
    "gpu": EqualTimeConfig(
      task=task,
      train_n=1_000_000,
      test_n=100_000,
      time_budget=3600.0,
      train=TrainConfig(steps_per_epoch=1000),
    ),
  }


def main(task: int, doc: str) -> None:
  import argparse

  parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", default=f"experiments/results/task{task}_convtransformer")
  parser.add_argument("--scale", choices=("cpu", "gpu"), default="cpu")
  parser.add_argument(
    "--time-budget", type=float, default=None, help="seconds per model (overrides the scale's)"
  )
  args = parser.parse_args()
  config = scales(task)[args.scale]
  if args.time_budget is not None:
    config = dataclasses.replace(config, time_budget=args.time_budget)
  # Task 1 and Task 2 read the same recipe data: one generation serves both scripts.
  print(run(config, args.workdir, cache="experiments/results/cache")["table"])
