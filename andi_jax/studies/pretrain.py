"""The shipped models (andi_jax/pretrained/): trained on the fly, calibrated, tested, described.
(experiments/pretrain.py runs it.)

One run per task, in stages that each start from what the earlier ones left in the work directory:
  train      one ConvTransformer for lengths 10..999, batches simulated inside the step by the JAX
             generators, a fixed number of steps under a warm-up + cosine schedule; a parameter snapshot
             after every epoch (the learning curve); validation on andi-datasets trajectories
  calibrate  Task 1: the alpha standard error, the residual RMS of the trained model per (dimension,
             length bin, predicted-alpha bin) on andi-datasets trajectories apart from the test set
  ship       meta.json, parameters (with their sha256 manifest) and calibration into the package
  card       the test set drawn with andi-datasets (`test_n` per dimension 1-3, lengths 10..999, its own
             seed), per length bucket beside the TAMSD fit; calibration coverage, confusion matrix,
             predicted-vs-true plot, learning curve: test metric against minutes of training
"""

import dataclasses
import json
import os
import platform
import shutil

import jax
import numpy as np

from andi_jax import infer, metrics, pretrained, uncertainty
from andi_jax.data.recipe import MODELS, Recipe, generate
from andi_jax.methods.all_lengths import params_dir, prepare, train_all_lengths
from andi_jax.plotting import pyplot
from andi_jax.studies.task1 import pred_vs_true_png
from andi_jax.train import checkpoint
from andi_jax.train.engine import TrainConfig


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
  task: int
  steps: int  # training steps of batch_size fresh trajectories; the cosine schedule ends there
  model: str = "conv_transformer"
  batch_size: int = 512
  learning_rate: float = 1e-3
  steps_per_epoch: int = 500  # steps between validations and snapshots
  val_n: int = 4_000  # andi-datasets validation trajectories (1D, lengths 10..999)
  calib_n: int = 20_000  # JAX-generated trajectories per dimension that calibrate the standard error
  test_n: int = 10_000  # andi-datasets test trajectories per dimension
  curve_n: int = 3_000  # of the 1D test set, scored at every snapshot for the learning curve
  seed: int = 0

  @property
  def name(self) -> str:
    return f"task{self.task}"


CONFIGS = {
  1: PretrainConfig(task=1, steps=6_000),
  2: PretrainConfig(task=2, steps=4_500),
}
VAL_SEED, TEST_SEED, CALIB_SEED = 20_001, 30_001, 40_001  # the data sets' own seeds, apart from training's


def _train_config(config: PretrainConfig) -> TrainConfig:
  return TrainConfig(
    task=config.task,
    batch_size=config.batch_size,
    learning_rate=config.learning_rate,
    decay_steps=config.steps,
    steps_per_epoch=config.steps_per_epoch,
    max_epochs=-(-config.steps // config.steps_per_epoch),
    seed=config.seed,
  )


def train(config: PretrainConfig, workdir, cache=None, progress: bool = True) -> dict:
  """Trains (or resumes) the model in workdir; workdir/snapshots/ holds each epoch's parameters."""
  val = generate(Recipe(n=config.val_n, dim=1, seed=VAL_SEED), cache_dir=cache, progress=progress)
  x, length = prepare([t[0] for t in val.trajectories()])
  snapshots = os.path.join(workdir, "snapshots")
  os.makedirs(snapshots, exist_ok=True)

  def snapshot(state, entry):
    path = os.path.join(snapshots, f"epoch_{entry['epoch']:03d}")
    if not os.path.exists(path):
      checkpoint.save_params(path, jax.tree.map(np.asarray, state.params))
    with open(path + ".json", "w") as f:
      json.dump(entry, f)

  return train_all_lengths(
    x,
    length,
    val.alpha if config.task == 1 else val.model,
    workdir,
    task=config.task,
    model_name=config.model,
    folds=1,
    train_config=_train_config(config),
    onthefly=True,
    progress=progress,
    on_epoch=snapshot,
  )


def snapshot_list(workdir) -> list[tuple[str, dict]]:
  """(params directory, history entry) of every saved epoch, in order."""
  snapshots = os.path.join(workdir, "snapshots")
  names = sorted(n[: -len(".json")] for n in os.listdir(snapshots) if n.endswith(".json"))
  out = []
  for n in names:
    with open(os.path.join(snapshots, n + ".json")) as f:
      out.append((os.path.join(snapshots, n), json.load(f)))
  return out


def test_set(config: PretrainConfig, dim: int, cache=None, progress: bool = True):
  """The model card's test set of `dim`-dimensional trajectories, drawn with andi-datasets."""
  return generate(Recipe(n=config.test_n, dim=dim, seed=TEST_SEED + dim), cache_dir=cache, progress=progress)


def calibration_set(config: PretrainConfig, dim: int, cache=None, progress: bool = True):
  """Trajectories that calibrate the standard error, drawn with andi-datasets apart from the test set."""
  return generate(
    Recipe(n=config.calib_n, dim=dim, seed=CALIB_SEED + dim), cache_dir=cache, progress=progress
  )


def calibrate(config: PretrainConfig, workdir, cache=None, progress: bool = True) -> dict | None:
  """Task 1: the standard-error tables (andi_jax/uncertainty.py) of the trained model, one per dimension,
  into workdir/meta.json; Task 2 has its class probabilities and nothing to calibrate."""
  if config.task != 1:
    return None
  predictor = infer.load(workdir)
  tables = {}
  for dim in (1, 2, 3):
    ds = calibration_set(config, dim, cache, progress)
    pred = predictor.predict(ds.trajectories(), progress=progress)
    tables[str(dim)] = uncertainty.fit_table(pred, ds.alpha, ds.length).round(4).tolist()
  meta = checkpoint.read_meta(workdir)
  meta["calibration"] = {
    "length_edges": list(uncertainty.LENGTH_EDGES),
    "alpha_edges": list(uncertainty.ALPHA_EDGES),
    "se": tables,
    "data": f"andi-datasets, {config.calib_n} trajectories per dimension, seeds {CALIB_SEED}+dim",
  }
  checkpoint.write_meta(workdir, meta)
  return meta["calibration"]


def ship(config: PretrainConfig, workdir, dest=None) -> str:
  """Copies the trained model (meta.json and parameters) into the package: dest, or pretrained/taskN."""
  dest = dest or pretrained.path(config.task)
  os.makedirs(dest, exist_ok=True)
  shutil.copy2(os.path.join(workdir, "meta.json"), os.path.join(dest, "meta.json"))
  shutil.rmtree(params_dir(dest), ignore_errors=True)
  shutil.copytree(params_dir(workdir), params_dir(dest))
  return dest


def _scores(config: PretrainConfig, predictor, ds) -> dict:
  """Per length bucket: Task 1 MAE of the model and of the TAMSD fit, and the standard error's coverage;
  Task 2 micro-F1 and the confusion matrix."""
  trajs = ds.trajectories()
  out = predictor.predict(trajs)
  if config.task == 2:
    label = out.argmax(1)
    return {
      "f1_micro": metrics.by_length(metrics.f1_micro, label, ds.model, ds.length),
      "f1_macro": metrics.f1_macro(label, ds.model, len(MODELS)),
      "confusion": metrics.confusion(label, ds.model, len(MODELS)).tolist(),
    }
  se = predictor.standard_error(trajs, out)
  tamsd = np.array([metrics.tamsd_alpha(t) for t in trajs])
  covered = lambda k: lambda pred_se, true: uncertainty.coverage(pred_se[:, 0], true, pred_se[:, 1], k)
  with_se = np.stack([out, se], 1)
  return {
    "mae": metrics.by_length(metrics.mae, out, ds.alpha, ds.length),
    "mae_tamsd": metrics.by_length(metrics.mae, tamsd, ds.alpha, ds.length),
    "coverage_1se": metrics.by_length(covered(1.0), with_se, ds.alpha, ds.length),
    "coverage_2se": metrics.by_length(covered(2.0), with_se, ds.alpha, ds.length),
    "pred": out,
  }


def learning_curve(config: PretrainConfig, workdir, ds) -> list[dict]:
  """The test metric (Task 1 MAE, Task 2 micro-F1) of every epoch's snapshot on the first curve_n
  trajectories of the 1D test set, against the minutes of training that led to it."""
  trajs = ds.trajectories()[: config.curve_n]
  probe, curve = infer.load(workdir), []  # one predictor: its compiled forward takes each snapshot
  for params_path, entry in snapshot_list(workdir):
    probe.params = jax.device_put(checkpoint.load_params(params_path))
    out = probe.predict(trajs)
    value = (
      metrics.mae(out, ds.alpha[: len(trajs)])
      if config.task == 1
      else metrics.f1_micro(out.argmax(1), ds.model[: len(trajs)])
    )
    curve.append({"epoch": entry["epoch"], "minutes": entry["seconds"] / 60, "value": value})
  return curve


def _host() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      name = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
  except (OSError, StopIteration):
    name = platform.processor() or platform.machine()
  return f"{os.cpu_count()} cores of {name}"


def _curve_png(path, curve, config: PretrainConfig, tamsd_mae: float | None):
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(5.5, 3.8))
  ax.plot([c["minutes"] for c in curve], [c["value"] for c in curve], "o-", label="shipped model's run")
  if tamsd_mae is not None:
    ax.axhline(tamsd_mae, color="k", ls="--", lw=1, label="TAMSD fit")
  name = "MAE of alpha" if config.task == 1 else "micro-F1"
  ax.set(xlabel="minutes of training", ylabel=f"test {name}", title=f"Task {config.task}: test {name}, 1D")
  ax.set_xlim(left=0)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def _confusion_png(path, confusion):
  plt = pyplot()
  c = np.asarray(confusion, float)
  share = c / np.maximum(c.sum(1, keepdims=True), 1)
  fig, ax = plt.subplots(figsize=(4.8, 4.2))
  im = ax.imshow(share, vmin=0, vmax=1, cmap="Blues")
  for i in range(len(MODELS)):
    for j in range(len(MODELS)):
      ax.text(j, i, f"{share[i, j]:.2f}", ha="center", va="center", color="w" if share[i, j] > 0.5 else "k")
  ax.set(xticks=range(len(MODELS)), yticks=range(len(MODELS)), xticklabels=MODELS, yticklabels=MODELS)
  ax.set(xlabel="predicted", ylabel="true", title="Task 2, 1D test set: share per true model")
  fig.colorbar(im, ax=ax)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def _table(scores: dict, task: int) -> str:
  if task == 1:
    head = "| dim | length bucket | n | MAE model | MAE TAMSD fit | within ±1 SE | within ±2 SE |"
    keys = ("mae", "mae_tamsd", "coverage_1se", "coverage_2se")
  else:
    head, keys = "| dim | length bucket | n | micro-F1 |", ("f1_micro",)
  lines = [head, "|" + "---|" * (3 + len(keys))]
  for dim, s in scores.items():
    for i, row in enumerate(s[keys[0]]):
      values = " | ".join(f"{s[k][i]['value']:.3f}" for k in keys)
      lines.append(f"| {dim}D | {row['bucket']} | {row['n']} | {values} |")
  return "\n".join(lines)


def card(config: PretrainConfig, workdir, dest=None, cache=None, progress: bool = True) -> dict:
  """Tests the shipped model (dest, default pretrained/taskN) and writes its card there: card.json,
  MODEL_CARD.md, learning_curve.png, pred_vs_true.png (Task 1) or confusion.png (Task 2)."""
  dest = dest or pretrained.path(config.task)
  predictor = infer.load(dest)
  scores, tests = {}, {}
  for dim in (1, 2, 3):
    tests[dim] = test_set(config, dim, cache, progress)
    scores[dim] = _scores(config, predictor, tests[dim])
  one_d = tests[1]
  curve = learning_curve(config, workdir, one_d)
  tamsd_curve = None
  if config.task == 1:
    subset = one_d.trajectories()[: config.curve_n]
    tamsd_curve = metrics.mae([metrics.tamsd_alpha(t) for t in subset], one_d.alpha[: len(subset)])
    pred_vs_true_png(
      os.path.join(dest, "pred_vs_true.png"),
      one_d.alpha,
      scores[1].pop("pred"),
      one_d.length,
      "shipped Task 1 model, 1D test set",
    )
    for dim in (2, 3):
      scores[dim].pop("pred")
  else:
    _confusion_png(os.path.join(dest, "confusion.png"), scores[1]["confusion"])
  _curve_png(os.path.join(dest, "learning_curve.png"), curve, config, tamsd_curve)
  history = [e for _, e in snapshot_list(workdir)]
  meta = checkpoint.read_meta(dest)
  n_params = sum(np.size(a) for a in jax.tree.leaves(predictor.params))
  summary = {
    "task": config.task,
    "config": dataclasses.asdict(config),
    "model": meta["model"],
    "model_config": meta["model_config"],
    "parameters": int(n_params),
    "train_minutes": history[-1]["seconds"] / 60 if history else None,
    "host": _host(),
    "best_epoch": int(np.argmin([e["val_metric"][0] for e in history])) if history else None,
    "scores": {str(d): s for d, s in scores.items()},
    "learning_curve": curve,
    "learning_curve_tamsd_mae": tamsd_curve,
    "seeds": {"training": config.seed, "validation": VAL_SEED, "test": TEST_SEED, "calibration": CALIB_SEED},
  }
  with open(os.path.join(dest, "card.json"), "w") as f:
    json.dump(summary, f, indent=1)
  with open(os.path.join(dest, "MODEL_CARD.md"), "w") as f:
    f.write(_card_md(config, summary, _table(scores, config.task)))
  return summary


def _confusion_md(s: dict) -> str:
  lines = ["1D confusion matrix (rows: true model, columns: predicted):", ""]
  lines += ["| true \\ predicted | " + " | ".join(MODELS) + " |", "|---|" + "---|" * len(MODELS)]
  for name, row in zip(MODELS, s["scores"]["1"]["confusion"]):
    lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
  return "\n".join(lines)


def _card_md(config: PretrainConfig, s: dict, table: str) -> str:
  task1 = config.task == 1
  what = "the anomalous exponent α (AnDi Task 1)" if task1 else "the diffusion model (AnDi Task 2)"
  output = (
    "α clipped to [0.05, 2] and its standard error (the calibrated RMS error of α for the trajectory's "
    "dimension, length and predicted α)"
    if task1
    else f"the probabilities of {', '.join(MODELS)}"
  )
  calibrated = (
    f" Standard errors calibrated on {config.calib_n:,} other andi-datasets trajectories per dimension "
    f"(seeds {CALIB_SEED}+dim)."
    if task1
    else ""
  )
  extra = "" if task1 else f"\n1D macro-F1 {s['scores']['1']['f1_macro']:.3f}. {_confusion_md(s)}\n"
  figure = "![predicted against true α](pred_vs_true.png)" if task1 else "![confusion](confusion.png)"
  mc, steps, rows = s["model_config"], config.steps, config.steps * config.batch_size
  return f"""# Shipped model `{pretrained.NAMES[config.task]}`: {what}

Generated by `python experiments/pretrain.py --task {config.task}`; every number below is measured by it.

## Model
ConvTransformer (seed 000): width {mc["width"]}, {mc["blocks"]} encoder blocks of {mc["heads"]} heads,
{s["parameters"]:,} parameters; one model for every length, applied to each axis of a trajectory and
averaged over the axes. Output: {output}.

## Training
{steps:,} steps of {config.batch_size} trajectories simulated inside the training step by the JAX
generators (the AnDi 2020 recipe: ATTM, CTRW, FBM, LW, SBM, lengths 10-999, localisation noise 0.1, 0.5
or 1.0; 1D; {rows:,} fresh trajectories, none seen twice), Adam, learning rate {config.learning_rate:g}
after a 2 % warm-up, cosine decay to zero, training seed {config.seed}; {s["train_minutes"]:.0f} minutes
(training and validation) on {s["host"]}. Kept: the epoch (of {config.steps_per_epoch} steps) of best
validation {"MAE" if task1 else "error rate"} (epoch {s["best_epoch"]}) on {config.val_n:,}
andi-datasets trajectories (seed {VAL_SEED}).

## Test
Drawn with andi-datasets (independent of the JAX generators it trained on): {config.test_n:,} trajectories
per dimension, lengths 10-999, seeds {TEST_SEED}+dim.{calibrated}

{table}
{extra}
![learning curve](learning_curve.png)
{figure}

The learning curve scores each epoch's parameters on the first {config.curve_n:,} trajectories of the
1D test set.
"""


STAGES = ("train", "calibrate", "ship", "card")


def main(argv=None):
  import argparse

  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--task", type=int, required=True, choices=sorted(CONFIGS))
  parser.add_argument("--stage", default="all", choices=("all", *STAGES), help="one stage, or all in turn")
  parser.add_argument("--workdir", default=None, help="training state and snapshots (runs/pretrain/taskN)")
  parser.add_argument("--cache", default="runs/pretrain/cache", help="andi-datasets validation/test sets")
  args = parser.parse_args(argv)
  config = CONFIGS[args.task]
  workdir = args.workdir or os.path.join("runs", "pretrain", config.name)
  stages = STAGES if args.stage == "all" else (args.stage,)
  if "train" in stages:
    out = train(config, workdir, args.cache)
    print(f"trained: validation metric {out['val_metric']} after {out['steps']} steps this call")
  if "calibrate" in stages:
    calibrate(config, workdir, args.cache)
  if "ship" in stages:
    print(f"shipped to {ship(config, workdir)}")
  if "card" in stages:
    card(config, workdir, cache=args.cache)
    print(f"model card: {os.path.join(pretrained.path(config.task), 'MODEL_CARD.md')}")
