"""GOKU-UI against its ablations and baselines on stochastic Stuart-Landau data, by training-set size.

For every model family, all (size, seed) runs train together (goku.train.Trainer); each is scored on
the held-out test trajectories: NRMSE of the reconstruction of the first seq_len frames and of the
forecast of the next `forecast` frames. Per model and size: the median over seeds of the runs' mean
NRMSE, with the standard error over seeds, as in the paper's figures.
"""

import dataclasses
import json
import os
import time

import jax
import numpy as np

from andi_jax.goku import baselines as goku_baselines
from andi_jax.goku import model as goku
from andi_jax.goku import stuart_landau as sl
from andi_jax.goku.train import TrainConfig, Trainer
from andi_jax.plotting import pyplot

LABELS = {
  "goku_ui": "GOKU-UI",
  "goku_ui_ss": "GOKU attention, single shooting",
  "goku_basic_ms": "GOKU-basic, multiple shooting",
  "goku_basic": "GOKU-basic",
  "lstm": "LSTM autoencoder",
  "latent_ode": "Latent ODE",
}


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
  data: sl.DataConfig = sl.DataConfig()
  train: TrainConfig = TrainConfig()
  models: tuple[str, ...] = tuple(LABELS)
  model_size: str = "paper"  # "paper" (GokuNets.jl's widths) or "mini"
  sizes: tuple[int, ...] = tuple(75 * 2**i for i in range(7))
  seeds: tuple[int, ...] = tuple(range(1, 11))
  forecast: int = 20
  # The Julia Latent ODE's optimiser; None: train's, as the other models
  latent_ode_lr: float | None = 1e-4
  latent_ode_weight_decay: float | None = 1e-7

  def __post_init__(self):
    unknown = set(self.models) - set(LABELS)
    if unknown:
      raise ValueError(f"unknown models {sorted(unknown)}; known: {list(LABELS)}")
    if self.model_size not in ("paper", "mini"):
      raise ValueError(f"model_size must be 'paper' or 'mini', got {self.model_size!r}")
    if max(self.sizes) > self.data.n_train:
      raise ValueError(f"training size {max(self.sizes)} exceeds the {self.data.n_train} generated")


def build(name: str, model_size: str, obs_dim: int):
  if name in ("lstm", "latent_ode"):
    cfg = goku_baselines.BaselineConfig(
      obs_dim=obs_dim, **(goku_baselines.MINI if model_size == "mini" else {})
    )
    return (goku_baselines.LSTMAutoencoder if name == "lstm" else goku_baselines.LatentODE)(cfg)
  cfg = goku.GOKUConfig(
    obs_dim=obs_dim,
    attention=name.startswith("goku_ui"),
    multiple_shooting=name in ("goku_ui", "goku_basic_ms"),
    **(goku.MINI if model_size == "mini" else {}),
  )
  return goku.GOKU(cfg)


def machine() -> str:
  device = jax.devices()[0]
  return (
    f"{os.cpu_count()} CPU cores"
    if device.platform == "cpu"
    else f"{device.device_kind} ({os.cpu_count()} CPU cores)"
  )


def load_data(cfg: sl.DataConfig, path) -> tuple[sl.Dataset, float]:
  """The data set, cached at `path` (regenerated when the config differs), and the seconds its
  generation took."""
  key = json.dumps(dataclasses.asdict(cfg), sort_keys=True)
  if os.path.exists(path):
    with np.load(path) as f:
      if str(f["config"]) == key:
        return sl.Dataset(**{k: f[k] for k in f.files if k not in ("config", "seconds")}), float(f["seconds"])
  t0 = time.perf_counter()
  data = sl.generate(cfg)
  seconds = time.perf_counter() - t0
  np.savez(path, config=key, seconds=seconds, **dataclasses.asdict(data))
  return data, seconds


def summarise(per_run: np.ndarray, sizes_M, sizes) -> list[dict]:
  """per_run (M,) mean NRMSE of each run -> per size: median and standard error over seeds."""
  rows = []
  for n in sizes:
    v = per_run[np.asarray(sizes_M) == n]
    rows.append(
      {
        "size": int(n),
        "median": float(np.median(v)),
        "per_seed": v.tolist(),
        "stderr": float(np.std(v, ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0,
      }
    )
  return rows


def table(results: dict, sizes) -> str:
  lines = [
    "| model | training size | reconstruction NRMSE | forecast NRMSE | per seed (rec / fc) |",
    "|---|---|---|---|---|",
  ]
  for name, res in results["models"].items():
    for rec, fc in zip(res["reconstruction"], res["forecast"]):
      seeds = ", ".join(f"{r:.3f} / {f:.3f}" for r, f in zip(rec["per_seed"], fc["per_seed"]))
      lines.append(
        f"| {LABELS[name]} | {rec['size']} | {rec['median']:.3f} ± {rec['stderr']:.3f} | "
        f"{fc['median']:.3f} ± {fc['stderr']:.3f} | {seeds} |"
      )
  naive = results["naive"]
  lines.append(
    f"| naive (per-sample temporal mean) | – | {naive['reconstruction']:.3f} | {naive['forecast']:.3f} | |"
  )
  return "\n".join(lines)


def smallest_size_comparison(results: dict, sizes) -> str:
  """GOKU-UI against the baselines at the smallest training size, one sentence per task."""
  models = results["models"]
  rivals = [name for name in ("lstm", "latent_ode") if name in models]
  if "goku_ui" not in models or not rivals:
    return ""
  lines = []
  for task in ("reconstruction", "forecast"):
    ui = models["goku_ui"][task][0]["median"]
    behind = [LABELS[name] for name in rivals if models[name][task][0]["median"] <= ui]
    figures = ", ".join(f"{LABELS[name]} {models[name][task][0]['median']:.3f}" for name in rivals)
    if behind:
      verdict = "not ahead of " + " and ".join(behind)
    else:
      verdict = "ahead of " + ("both baselines" if len(rivals) > 1 else LABELS[rivals[0]])
    lines.append(f"- {task}: GOKU-UI {ui:.3f} against {figures}: {verdict}.")
  return f"At the smallest training size ({min(sizes)} trajectories), median over seeds:\n" + "\n".join(lines)


def plot(path, results: dict, sizes) -> None:
  plt = pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  for ax, task in zip(axes, ("reconstruction", "forecast")):
    for name, res in results["models"].items():
      med = np.array([r["median"] for r in res[task]])
      err = np.array([r["stderr"] for r in res[task]])
      (line,) = ax.plot(sizes, med, "o-", label=LABELS[name])
      ax.fill_between(sizes, med - err, med + err, color=line.get_color(), alpha=0.2)
    ax.axhline(results["naive"][task], color="k", ls="--", lw=1, label="naive")
    ax.set(
      xscale="log",
      yscale="log",
      xlabel="training trajectories",
      ylabel="NRMSE",
      title=f"{task} ({results['steps'][task]} steps)",
    )
    ax.set_xticks(sizes, [str(s) for s in sizes])
  axes[0].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def run(config: ExperimentConfig, workdir, out_dir, progress: bool = True) -> dict:
  """Trains and scores every model; writes results.json, results.md and nrmse_vs_size.png to out_dir
  and checkpoints (resumable) plus the cached data set under workdir."""
  os.makedirs(workdir, exist_ok=True)
  os.makedirs(out_dir, exist_ok=True)
  data, data_seconds = load_data(config.data, os.path.join(workdir, "data.npz"))
  sizes_M = [n for n in config.sizes for _ in config.seeds]
  seeds_M = [s for _ in config.sizes for s in config.seeds]
  seq = config.train.seq_len
  results = {
    "config": dataclasses.asdict(config),
    "runs": {"size": sizes_M, "seed": seeds_M},
    "steps": {"reconstruction": seq, "forecast": config.forecast},
    "seconds": {"data": data_seconds},
    "models": {},
  }
  for name in config.models:
    train_cfg = config.train
    if name == "latent_ode":
      own = {"learning_rate": config.latent_ode_lr, "weight_decay": config.latent_ode_weight_decay}
      train_cfg = dataclasses.replace(train_cfg, **{k: v for k, v in own.items() if v is not None})
    trainer = Trainer(build(name, config.model_size, config.data.obs_dim), train_cfg)
    state, record = trainer.fit(
      data.z_train,
      data.z_val,
      data.w,
      sizes_M,
      seeds_M,
      workdir=os.path.join(workdir, name),
      progress=progress,
      desc=name,
    )
    t0 = time.perf_counter()
    scores = trainer.evaluate(state.best_params, data.z_test, data.w, seq, config.forecast)
    eval_seconds = time.perf_counter() - t0
    results["naive"] = {
      "reconstruction": float(np.mean(scores["naive_reconstruction"])),
      "forecast": float(np.mean(scores["naive_forecast"])),
    }
    results["models"][name] = {
      "reconstruction": summarise(scores["reconstruction"].mean(1), sizes_M, config.sizes),
      "forecast": summarise(scores["forecast"].mean(1), sizes_M, config.sizes),
      "median_over_samples": {
        "reconstruction": np.median(scores["reconstruction"], 1).tolist(),
        "forecast": np.median(scores["forecast"], 1).tolist(),
      },
      "best_step": np.asarray(state.best_step).tolist(),
      "skipped_steps": record["skipped_steps"],
      "train_seconds": record["seconds"],
      "steps": record["steps"],
      "eval_seconds": eval_seconds,
      "history": record["history"],
    }
    results["seconds"][name] = record["seconds"] + eval_seconds
    if progress:
      print(f"{name}: trained {record['seconds']:.0f} s, evaluated {eval_seconds:.0f} s", flush=True)

  md = table(results, config.sizes)
  plot(os.path.join(out_dir, "nrmse_vs_size.png"), results, list(config.sizes))
  with open(os.path.join(out_dir, "results.json"), "w") as f:
    json.dump(results, f, indent=1)
  skipped = "; ".join(
    f"{LABELS[name]} {res['skipped_steps']}"
    for name, res in results["models"].items()
    if any(res["skipped_steps"])
  )
  lr = f"peak learning rate {config.train.learning_rate}"
  if "latent_ode" in config.models:
    lr += f", Latent ODE {config.latent_ode_lr or config.train.learning_rate}"
  times = ", ".join(f"{LABELS.get(k, k)} {v:.0f} s" for k, v in results["seconds"].items())
  paragraphs = [
    "# GOKU-UI on stochastic Stuart-Landau oscillators (generated by "
    "`experiments/goku_stuart_landau.py`; do not edit)",
    f"{config.data.n_test} held-out test trajectories; input {seq} steps, forecast {config.forecast} "
    f"steps. NRMSE per sample = RMSE over time and the {config.data.obs_dim} observed dimensions / "
    "mean|x| of the scored segment; cell = median over seeds of the runs' mean ± standard error over "
    f"seeds ({len(config.seeds)} seeds: {list(config.seeds)}). {config.model_size} model widths; "
    f"{config.train.steps} training steps of batch {config.train.batch_size} per run "
    f"({config.train.schedule} schedule, {lr}). "
    + (
      f"Steps skipped for a non-finite gradient, per run in (size, seed) order: {skipped}."
      if skipped
      else "No step had a non-finite gradient."
    ),
    md,
    smallest_size_comparison(results, config.sizes),
    f"Time {sum(results['seconds'].values()):.0f} s on {machine()}, summed over the invocations that "
    f"produced these results (compilation included; other jobs may have shared the machine): {times}.",
  ]
  with open(os.path.join(out_dir, "results.md"), "w") as f:
    f.write("\n\n".join(p for p in paragraphs if p) + "\n")
  results["table"] = md
  return results
