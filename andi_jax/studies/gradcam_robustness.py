"""Seed 002's noise-robustness experiment: Grad-CAM-guided augmentation against random augmentation.

What the reference implementation does (github peardragon/ResAnDi, utils/_augmentation.py), followed here:
1. A base 8-class ResNet is trained on a large noiseless training set (the reference: 5 x 80,000).
2. Its Grad-CAM at the last stage, for the true class, on a small training set (the first 80,000 of
   those); each row's heat is averaged over its points.
3. Guided arm: in each class, the top 60 % of the rows by that mean heat are copied once, turned by a
   random angle about the origin, and join the small set. Random arm: as many rows per class, drawn
   uniformly with replacement, likewise turned. (The augmentation is a rotation; "noise" enters at
   test time. `augment="noise"` instead adds N(0, sigma^2), sigma ~ U(0, 1), to the copies.)
4. A fresh ResNet per arm and seed trains on its augmented set; accuracy is measured on a noiseless
   test set with N(0, s^2) added to every coordinate before the min-max scaling, s in NOISE.

Here `seeds` base models train together as one ensemble; guided member m is guided by base member m's
heat; the 2 x seeds augmented models (guided, then random) train together as a second ensemble.
Outputs: results.md (generated table beside the paper's figures), results.json, accuracy_vs_noise.png,
heat_by_class.png; the base ensemble is saved as an "eight-class" checkpoint for `andi-jax explain`.
"""

import dataclasses
import datetime
import json
import os
import time

import jax
import numpy as np

from andi_jax.data import eight_class
from andi_jax.explain import plots
from andi_jax.explain.gradcam import GradCAM
from andi_jax.methods.all_lengths import params_dir
from andi_jax.models import build_model
from andi_jax.plotting import pyplot
from andi_jax.train import checkpoint
from andi_jax.train.engine import Ensemble, EnsembleData, TrainConfig
from andi_jax.train.loop import fit

NOISE = (0.0, 0.3, 0.4, 0.5, 1.0)
# The paper's figures (REFERENCES.md, seed 002): accuracy at each s of NOISE, and the noiseless
# accuracy of its base ResNet-18.
PAPER = {"guided": (0.858, 0.734, 0.649, 0.494, 0.150), "random": (0.857, 0.722, 0.620, 0.456, 0.144)}
PAPER_BASE = 0.9036


@dataclasses.dataclass(frozen=True)
class RobustnessConfig:
  n_base: int = 1200  # training rows per class of the base models (the reference: 50,000)
  n_small: int = 500  # per class: the augmented arms' set, the base set's first rows (10,000)
  n_val: int = 150  # per class (10,000)
  n_test: int = 400  # per class (10,000)
  min_length: int = 10
  max_length: int = 200  # (1000)
  seeds: int = 3  # (5 reported)
  model: dict = dataclasses.field(
    default_factory=lambda: {  # (ResNet-18: the ResNetConfig defaults)
      "width": 16,
      "blocks": (1, 1, 1, 1),
      "norm_groups": 4,
      "stem_kernel": 15,
      "kernel": 7,
    }
  )
  # vmap: the ResNet's batched products beat lax.map's one-after-another 2.4x on a CPU (3 seeds, 64 rows)
  train: TrainConfig = TrainConfig(
    task=2,
    batch_size=64,
    learning_rate=2e-3,
    plateau_factor=0.5,
    plateau_patience=2,
    max_reductions=2,
    max_epochs=10,
    ensemble="vmap",
  )
  widths: tuple[int, ...] | None = (100, 200)  # length buckets (see EnsembleData.widths)
  top: float = 0.6  # share of each class the guided arm copies
  augment: str = "rotate"  # "rotate" (the reference) or "noise"
  noise: tuple[float, ...] = NOISE
  seed: int = 0

  def __post_init__(self):
    if self.augment not in ("rotate", "noise"):
      raise ValueError(f"augment must be 'rotate' or 'noise', got {self.augment!r}")
    if not 0 < self.top <= 1 or self.n_small > self.n_base:
      raise ValueError(
        f"need 0 < top <= 1 and n_small <= n_base, got {self.top}, {self.n_small}, {self.n_base}"
      )
    if 0.0 not in self.noise:
      raise ValueError(f"noise must include 0 (the noiseless accuracy), got {self.noise}")
    if self.train.task != 2:
      raise ValueError("the experiment trains classifiers: TrainConfig(task=2)")


PAPER_SCALE = RobustnessConfig(
  n_base=50_000,
  n_small=10_000,
  n_val=10_000,
  n_test=10_000,
  max_length=1000,
  seeds=5,
  model={},
  train=TrainConfig(
    task=2,
    batch_size=64,
    learning_rate=1e-4,
    plateau_factor=0.5,
    plateau_patience=5,
    max_reductions=3,
    max_epochs=100,
    ensemble="vmap",
  ),
  widths=(128, 256, 512, 1000),
)


def model_of(config: RobustnessConfig):
  return build_model("resnet", {**config.model, "outputs": len(eight_class.CLASSES), "channels": 2})


def augmented_rows(score_MxN, label_N, config: RobustnessConfig, rng) -> tuple[np.ndarray, np.ndarray]:
  """Rows to copy, (M, n_copies) each for the guided arm (top `top` of each class by member m's score)
  and for the random arm (as many per class, uniform with replacement)."""
  guided, random = [], []
  for score in score_MxN:
    g, r = [], []
    for c in np.unique(label_N):
      rows = np.flatnonzero(label_N == c)
      k = int(config.top * len(rows))
      g.append(rows[np.argsort(-score[rows], kind="stable")[:k]])
      r.append(rng.choice(rows, k))
    guided.append(np.concatenate(g))
    random.append(np.concatenate(r))
  return np.stack(guided), np.stack(random)


def transform(x_Nx2xW, length_N, augment: str, rng) -> np.ndarray:
  """The copies: turned by uniform angles, or with localisation noise of sigma ~ U(0, 1)."""
  if augment == "rotate":
    return eight_class.rotate(x_Nx2xW, rng.uniform(0, 2 * np.pi, len(x_Nx2xW)))
  sigma = rng.uniform(0, 1, len(x_Nx2xW))[:, None, None]
  valid = np.arange(x_Nx2xW.shape[-1]) >= x_Nx2xW.shape[-1] - length_N[:, None, None]
  return np.where(valid, x_Nx2xW + sigma * rng.standard_normal(x_Nx2xW.shape), 0.0).astype(np.float32)


def _fit(model, config: RobustnessConfig, seed: int, x, length, y, train_idx, val_idx, desc, progress):
  ens = Ensemble(model, dataclasses.replace(config.train, seed=seed))
  data = EnsembleData(
    x=x[None],
    length=length[None],
    y=y,
    group=np.zeros(len(train_idx), int),
    train_idx=train_idx,
    val_idx=val_idx,
    widths=config.widths,
  )
  result = fit(ens, data, progress=progress, desc=desc)
  return ens, result


def _accuracy(ens: Ensemble, params, test: eight_class.Trajectories, config: RobustnessConfig) -> np.ndarray:
  """(len(noise), M) test accuracy of each member at each noise level (one noisy test set per level)."""
  M = len(jax.tree.leaves(params)[0])
  out = []
  for i, s in enumerate(config.noise):
    x = eight_class.minmax(
      eight_class.add_noise(test.x, test.length, s, seed=[config.seed, 11, i]), test.length
    )
    data = EnsembleData(
      x=x[None],
      length=test.length[None],
      y=test.label,
      group=np.zeros(M, int),
      train_idx=np.zeros((M, 0), int),
      val_idx=np.tile(np.arange(len(test)), (M, 1)),
      widths=config.widths,
    )
    out.append(1.0 - ens.validate(params, data)[1])
  return np.array(out)


def save_classifier(path, params, model_config) -> None:
  """An "eight-class" checkpoint (what `andi-jax explain` loads)."""
  checkpoint.save_params(params_dir(path), jax.tree.map(np.asarray, params))
  checkpoint.write_meta(
    path,
    {
      "method": "eight-class",
      "model": "resnet",
      "model_config": dataclasses.asdict(model_config),
      "classes": list(eight_class.CLASSES),
      "members": len(jax.tree.leaves(params)[0]),
    },
  )


def run(config: RobustnessConfig, out_dir, workdir, progress: bool = True) -> dict:
  """The whole experiment; writes the results to out_dir and the base checkpoint to workdir/base."""
  start = time.perf_counter()
  seconds = {}
  tic = time.perf_counter()
  gen = dict(min_length=config.min_length, max_length=config.max_length)
  base = eight_class.generate(config.n_base, seed=config.seed, **gen)
  val = eight_class.generate(config.n_val, seed=config.seed + 1, **gen)
  test = eight_class.generate(config.n_test, seed=config.seed + 2, **gen)
  small = base.subset(np.flatnonzero(np.arange(len(base)) % config.n_base < config.n_small))
  seconds["data"] = time.perf_counter() - tic

  model, model_config = model_of(config)
  S = config.seeds
  tic = time.perf_counter()
  x = eight_class.minmax(np.concatenate([base.x, val.x]), np.concatenate([base.length, val.length]))
  length, y = np.concatenate([base.length, val.length]), np.concatenate([base.label, val.label])
  base_ens, base_fit = _fit(
    model,
    config,
    config.seed,
    x,
    length,
    y,
    np.tile(np.arange(len(base)), (S, 1)),
    np.tile(len(base) + np.arange(len(val)), (S, 1)),
    "base",
    progress,
  )
  base_params = base_fit.state.best_params
  save_classifier(os.path.join(workdir, "base"), base_params, model_config)
  seconds["train_base"] = time.perf_counter() - tic

  tic = time.perf_counter()
  cam = GradCAM(model, ensemble=config.train.ensemble)
  heat_M, _, _ = cam(
    base_params,
    eight_class.minmax(small.x, small.length),
    small.length,
    target_N=small.label,
    widths=config.widths,
  )
  score = heat_M.sum(-1) / small.length  # mean heat over each row's points, per base member
  seconds["gradcam"] = time.perf_counter() - tic

  tic = time.perf_counter()
  rng = np.random.default_rng([config.seed, 7])
  guided, random = augmented_rows(score, small.label, config, rng)
  picks = np.concatenate([guided, random])  # (2S, n_copies): members 0..S-1 guided, S..2S-1 random
  copies = transform(small.x[picks.ravel()], small.length[picks.ravel()], config.augment, rng)
  n_small, n_val, n_copies = len(small), len(val), picks.shape[1]
  length = np.concatenate([small.length, val.length, small.length[picks.ravel()]])
  x = eight_class.minmax(np.concatenate([small.x, val.x, copies]), length)
  y = np.concatenate([small.label, val.label, small.label[picks.ravel()]])
  own = n_small + n_val + np.arange(2 * S)[:, None] * n_copies + np.arange(n_copies)
  train_idx = np.concatenate([np.tile(np.arange(n_small), (2 * S, 1)), own], 1)
  aug_ens, aug_fit = _fit(
    model,
    config,
    config.seed + 1,
    x,
    length,
    y,
    train_idx,
    np.tile(n_small + np.arange(n_val), (2 * S, 1)),
    "augmented",
    progress,
  )
  seconds["train_augmented"] = time.perf_counter() - tic

  tic = time.perf_counter()
  acc_base = _accuracy(base_ens, base_params, test, config)
  acc_aug = _accuracy(aug_ens, aug_fit.state.best_params, test, config)
  seconds["test"] = time.perf_counter() - tic
  seconds["total"] = time.perf_counter() - start

  summary = {
    "generated": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    "config": dataclasses.asdict(config),
    "model_config": dataclasses.asdict(model_config),
    "backend": jax.default_backend(),
    "noise": list(config.noise),
    "seconds": seconds,
    "accuracy": {
      "base": acc_base.tolist(),
      "guided": acc_aug[:, :S].tolist(),
      "random": acc_aug[:, S:].tolist(),
    },
    "epochs": {"base": len(base_fit.history), "augmented": len(aug_fit.history)},
    "best_epoch": {
      "base": np.asarray(base_fit.state.best_epoch).tolist(),
      "augmented": np.asarray(aug_fit.state.best_epoch).tolist(),
    },
    "paper": {**PAPER, "base": PAPER_BASE},
  }
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "results.json"), "w") as f:
    json.dump(summary, f, indent=1)
  accuracy_png(os.path.join(out_dir, "accuracy_vs_noise.png"), summary)
  heat = heat_M.mean(0)
  W = heat.shape[-1]
  n_classes = len(eight_class.CLASSES)
  plots.heat_by_class_png(
    os.path.join(out_dir, "heat_by_class.png"),
    plots.heat_profiles([h[W - L :] for h, L in zip(heat, small.length)], small.label, n_classes),
    eight_class.CLASSES,
    np.bincount(small.label, minlength=n_classes),
    "Grad-CAM of the base models (last stage, true class), small training set",
  )
  summary["table"] = markdown(summary)
  with open(os.path.join(out_dir, "results.md"), "w") as f:
    f.write(summary["table"])
  return summary


def _stats(acc_LxM):
  a = np.asarray(acc_LxM)
  return a.mean(1), a.std(1, ddof=1) if a.shape[1] > 1 else np.zeros(len(a))


def markdown(summary: dict) -> str:
  cfg, S = summary["config"], summary["config"]["seeds"]
  noise = summary["noise"]
  (g, g_sd), (r, r_sd), (b, b_sd) = (_stats(summary["accuracy"][k]) for k in ("guided", "random", "base"))
  diff = np.asarray(summary["accuracy"]["guided"]) - np.asarray(summary["accuracy"]["random"])
  d, d_sd = _stats(diff)  # guided member m against random member m
  se = d_sd / np.sqrt(S)
  paper_idx = {s: i for i, s in enumerate(NOISE)}
  clean = noise.index(0.0)
  lines = [
    "# Grad-CAM-guided against random augmentation (seed 002, Bae, Baek & Jeong)",
    "",
    f"Generated by `experiments/gradcam_robustness.py` on {summary['generated']} ({summary['backend']}); "
    f"wall time {summary['seconds']['total'] / 60:.1f} min "
    f"({', '.join(f'{k} {v:.0f} s' for k, v in summary['seconds'].items() if k != 'total')}).",
    "",
    f"Setup: 8 classes, 2D noiseless trajectories of {cfg['min_length']}-{cfg['max_length']} points; base "
    f"models trained on {cfg['n_base']} rows per class, the augmented arms on the first {cfg['n_small']} of "
    f"them plus {int(cfg['top'] * cfg['n_small'])} copies per class ({cfg['augment']}); validation "
    f"{cfg['n_val']} and test {cfg['n_test']} rows per class; {S} seeds per arm, trained together. "
    f"ResNet {summary['model_config']['blocks']}, width {summary['model_config']['width']}, kernels "
    f"{summary['model_config']['stem_kernel']}/{summary['model_config']['kernel']}. The paper: ResNet-18, "
    "10-1000 points, 50,000 / 10,000 rows per class, 5 seeds.",
    "",
    "## Noiseless 8-class test accuracy of the base models",
    "",
    "| | accuracy |",
    "|---|---|",
    f"| ours (mean ± sd over {S} seeds) | {b[clean]:.4f} ± {b_sd[clean]:.4f} |",
    f"| ours, per seed | {', '.join(f'{v:.4f}' for v in np.asarray(summary['accuracy']['base'])[clean])} |",
    f"| paper | {PAPER_BASE:.4f} |",
    "",
    "## Accuracy under localisation noise of std s",
    "",
    "Ours: mean ± sd over seeds; Δ = guided − random, paired by seed, ± its standard error. The base column "
    "is "
    "the base models (no augmentation, the larger training set).",
    "",
    "| s | guided (ours) | random (ours) | Δ (ours) | guided (paper) | random (paper) | Δ (paper) | base "
    "(ours) |",
    "|---|---|---|---|---|---|---|---|",
  ]
  for i, s in enumerate(noise):
    p = paper_idx.get(s)
    paper = (
      f"{PAPER['guided'][p]:.3f} | {PAPER['random'][p]:.3f} | {PAPER['guided'][p] - PAPER['random'][p]:+.3f}"
      if p is not None
      else "– | – | –"
    )
    lines.append(
      f"| {s:g} | {g[i]:.3f} ± {g_sd[i]:.3f} | {r[i]:.3f} ± {r_sd[i]:.3f} | {d[i]:+.3f} ± {se[i]:.3f} | "
      f"{paper} | {b[i]:.3f} ± {b_sd[i]:.3f} |"
    )
  noisy = [i for i, s in enumerate(noise) if s >= 0.3]
  ahead = [i for i in noisy if d[i] > 2 * se[i]]
  behind = [i for i in noisy if d[i] < -2 * se[i]]
  if ahead and not behind:
    verdict = (
      f"guided augmentation is ahead by more than two standard errors at s = "
      f"{', '.join(f'{noise[i]:g}' for i in ahead)}"
    )
  elif behind:
    verdict = (
      f"guided augmentation is behind by more than two standard errors at s = "
      f"{', '.join(f'{noise[i]:g}' for i in behind)}"
    )
  else:
    verdict = "guided augmentation shows no advantage beyond two standard errors at any s >= 0.3"
  lines += ["", f"Verdict at s ≥ 0.3: {verdict} (the paper: guided ahead by 0.006-0.038 at s = 0.3-1.0).", ""]
  return "\n".join(lines)


def accuracy_png(path, summary: dict) -> None:
  plt = pyplot()
  noise = np.asarray(summary["noise"])
  fig, ax = plt.subplots(figsize=(5.6, 4))
  for key, colour in (("guided", "k"), ("random", "tab:gray")):
    m, sd = _stats(summary["accuracy"][key])
    ax.errorbar(noise, m, sd, color=colour, marker="o", ms=4, capsize=3, label=f"{key} (ours)")
    ax.plot(NOISE, PAPER[key], color=colour, ls="--", marker="s", ms=3, alpha=0.7, label=f"{key} (paper)")
  m, sd = _stats(summary["accuracy"]["base"])
  ax.errorbar(
    noise, m, sd, color="tab:blue", ls=":", marker=".", capsize=3, label="base, no augmentation (ours)"
  )
  ax.set(
    xlabel="localisation noise std s",
    ylabel="test accuracy (8 classes)",
    ylim=(0, 1),
    title="Grad-CAM-guided vs random augmentation",
  )
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
