"""The benchmark suite in one run: `andi-jax benchmark all [--quick | --mode medium]` writes RESULTS.md,
results.json, a PNG.

1. training throughput per model family and T: one model; the folds as one ensemble step; the same
   models trained one after another (a Python loop over their jitted steps);
2. the seed's PyTorch LSTM on the same arrays, training and inference (when torch is installed);
3. end-to-end inference of the batched predictors on a ragged recipe set (arrays in memory to output);
4. data generation per diffusion model: andi-datasets through the project's parallel generator, and
   the JAX generator; ensemble training on batches generated inside the step against stored arrays;
5. time to a validation MAE at T=100: JAX LSTM (one model, and the 5-fold ensemble) against PyTorch;
6. scaling of the ensemble step with the number of models.
Every figure is taken after compilation, synchronised, as the median of repeats, in this one process.
"""

import dataclasses
import json
import os
import platform
import subprocess
import time

import jax
import numpy as np

from andi_jax import export as graph_export
from andi_jax.bench import generation
from andi_jax.bench import measure as bench
from andi_jax.bench import torch_reference as bench_torch
from andi_jax.data.preprocess import standardize
from andi_jax.methods.all_lengths import WIDTHS
from andi_jax.models import REGISTRY, build_model
from andi_jax.plotting import pyplot
from andi_jax.train.engine import Ensemble, EnsembleData, TrainConfig, kfold_indices, resolved_mode
from andi_jax.train.loop import fit


@dataclasses.dataclass(frozen=True)
class SuiteConfig:
  lengths: tuple[int, ...] = (10, 50, 100, 500, 1000)
  families: tuple[str, ...] = tuple(REGISTRY)
  folds: int = 5
  batch: int = 512
  repeats: int = 10
  torch: bool = True  # the PyTorch rows, when torch is installed
  ragged_n: int = 5_000  # trajectories of the end-to-end inference set, lengths 10..ragged_max
  ragged_max: int = 999
  generation_T: tuple[int, ...] = (100, 1000)
  generation_n: int = 2_000  # andi-datasets trajectories per timing (the JAX side draws a batch of 4096)
  generation_models: tuple[str, ...] = ("attm", "ctrw", "fbm", "lw", "sbm")
  onthefly_T: tuple[int, ...] = (10, 100, 500)  # training on batches generated inside the step, vs stored
  onthefly_families: tuple[str, ...] | None = None  # None: every family of `families`
  onthefly_buckets: tuple[str, ...] = (
    "conv_transformer",
  )  # also measured as it trains: all lengths, bucketed
  onthefly_widths: tuple[int, ...] = WIDTHS
  tta_n: int = 200_000  # recipe trajectories at T=100 for time-to-accuracy (80 % train, 20 % validation)
  tta_target: float = 0.30
  tta_max_epochs: int = 20
  max_T: tuple[tuple[str, int], ...] = ()  # (family, largest T measured): bounds a slow family's rows
  tta_runs: tuple[str, ...] = ("jax_one", "jax_5fold")  # JAX sides timed; PyTorch times one model
  scaling_models: tuple[int, ...] = (1, 5, 25, 215)
  scaling_T: int = 100
  memory_gb: float = 20.0  # skip a scaling row whose estimated activation memory exceeds this
  export_families: tuple[str, ...] | None = None  # exported graphs' inference; None: every family
  export_T: tuple[int, ...] = (10, 100, 500, 1000)
  export_batches: tuple[int, ...] = (1, 2048)


# Every section, small, where compilation is most of the time: the LSTM and the ConvTransformer at T=100
# (ResNet-18's compilation alone takes minutes), ragged rows to 30 points (the LSTM compiles one forward
# per trained length), the LSTM on the fly, a loose time-to-accuracy target, one model a side: 255 s.
QUICK = SuiteConfig(
  lengths=(100,),
  families=("lstm", "conv_transformer"),
  repeats=3,
  ragged_n=500,
  ragged_max=30,
  generation_T=(100,),
  generation_n=1_000,
  onthefly_T=(100,),
  onthefly_families=("lstm",),
  onthefly_buckets=(),
  tta_n=10_000,
  tta_target=0.50,
  tta_max_epochs=4,
  tta_runs=("jax_one",),
  scaling_models=(1, 5),
  export_T=(100,),
  export_batches=(1, 256),
)
# Every section at every T on 2 cores; time-to-accuracy at full size and target (MAE 0.30, 200,000
# trajectories): one JAX model and the 5-fold ensemble, against one PyTorch model (five runs: 5x its time).
# ResNet-18 (kernels 15, widths to 512) costs ~2 GFLOP per trajectory forward at T=1000: ~2 min a step.
MEDIUM = SuiteConfig(repeats=3, max_T=(("resnet", 100),), generation_n=1_000, tta_max_epochs=12)
MODES = {"quick": QUICK, "medium": MEDIUM, "full": SuiteConfig()}


def current_commit() -> str:
  """The checkout's short commit hash, or "unknown" outside a git checkout."""
  run = subprocess.run(
    ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=os.path.dirname(__file__)
  )
  return run.stdout.strip() or "unknown"


def machine() -> str:
  cpu = platform.processor()
  if os.path.exists("/proc/cpuinfo"):
    # "AMD EPYC" names several generations: family, model and vector width tell the hosts apart
    first_cpu = open("/proc/cpuinfo").read().split("\n\n")[0].splitlines()
    info = {k.strip(): v.strip() for k, v in (l.split(":", 1) for l in first_cpu if ":" in l)}
    flags = info.get("flags", "").split()
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    cpu = (
      f"{info.get('model name', cpu)} (family {info.get('cpu family')}, model {info.get('model')}, {simd})"
    )
  devices = jax.devices()
  return (
    f"{cpu}; {os.cpu_count()} cores; JAX {jax.__version__} on {len(devices)} "
    f"{devices[0].platform} device(s) ({devices[0].device_kind})"
  )


def _lengths(config: SuiteConfig, family: str, lengths) -> list[int]:
  limit = dict(config.max_T).get(family)
  return [T for T in lengths if limit is None or T <= limit]


def throughput_rows(config: SuiteConfig, log) -> list[dict]:
  rows = []
  for family in config.families:
    for T in _lengths(config, family, config.lengths):
      row = {
        "family": family,
        "T": T,
        **bench.train_rates(family, T, config.folds, config.batch, config.repeats),
        "infer": bench.infer_throughput(family, T, config.folds, 4 * config.batch, repeats=config.repeats),
      }
      rows.append(row)
      log(row)
  return rows


def onthefly_rows(config: SuiteConfig, log) -> list[dict]:
  """Ensemble training on batches generated in the step and on stored arrays, timed in turn."""
  rows = []
  for family in config.onthefly_families or config.families:
    for T in _lengths(config, family, config.onthefly_T):
      row = {
        "family": family,
        "T": T,
        **bench.stored_and_onthefly(family, T, config.folds, config.batch, config.repeats),
      }
      rows.append(row)
      log(row)
  for family in config.onthefly_buckets:
    for r in bench.stored_and_onthefly_buckets(
      family, config.onthefly_widths, config.folds, config.batch, config.repeats
    ):
      row = {"family": family, "T": r.pop("lengths"), **r}
      rows.append(row)
      log(row)
  return rows


def torch_rows(config: SuiteConfig, log) -> list[dict]:
  """The seed's PyTorch LSTM, one model, against the JAX LSTM ensemble on the same arrays: training steps
  and fold-averaged inference, each pair timed in alternating blocks (bench.interleaved_seconds,
  calls_per_turn) so that
  the drift of a shared machine weighs on both sides of a ratio alike. Beside the training pair, the JAX
  step's matrix products alone (bench.lstm_products_step): the ceiling on the training ratio."""
  from andi_jax.infer import FoldForward

  model, _ = build_model("lstm")
  forward = FoldForward(model, classify=False)
  rows = []
  for T in config.lengths:
    x, y = bench.walks_and_alphas(4 * config.batch, T)
    params = Ensemble(model, TrainConfig(batch_size=config.batch)).init(config.folds, T).params
    lengths = np.full(len(x), T, np.int32)
    blocks = dict(repeats=3, calls_per_turn=config.repeats)
    train = bench.interleaved_seconds(
      [
        bench_torch.train_step(x, y, config.batch),
        bench.ensemble_step("lstm", T, config.folds, config.batch),
        bench.lstm_products_step(T, config.folds, config.batch),
      ],
      **blocks,
    )
    infer = bench.interleaved_seconds(
      [bench_torch.infer_call(x, len(x), config.folds), lambda: forward(params, x, lengths)], **blocks
    )
    rows.append(
      {
        "T": T,
        "train": config.batch / train[0],
        "jax_train": config.folds * config.batch / train[1],
        "jax_products": config.folds * config.batch / train[2],
        "infer": len(x) / infer[0],
        "jax_infer": len(x) / infer[1],
      }
    )
    log(rows[-1])
  return rows


def inference_rows(config: SuiteConfig, log) -> list[dict]:
  """Ragged recipe-like set (lengths 10-999) in memory -> predictions, per family, untrained weights."""
  from andi_jax import infer
  from andi_jax.methods.per_length import CLIP, HNU_LENGTHS, SCALE

  rng = np.random.default_rng(2)
  trajs = [np.cumsum(rng.normal(size=L)) for L in rng.integers(10, config.ragged_max + 1, config.ragged_n)]
  rows = []
  for family in config.families:
    model, _ = build_model(family)
    ens = Ensemble(model, TrainConfig())
    if family == "lstm":  # the seed's method: 43 per-length models x folds (its weights' shapes do not
      params = dict.fromkeys(HNU_LENGTHS, ens.init(config.folds, 10).params)  # depend on the length)
      predictor = infer.Predictor(model, np.array(HNU_LENGTHS), params, SCALE, CLIP)
    else:
      predictor = infer.AllLengthsPredictor(model, ens.init(config.folds, 64).params, task=1, classes=None)
    subset = [t for t in trajs if len(t) <= dict(config.max_T).get(family, config.ragged_max)]
    if len(subset) < 100:  # a family bounded to short rows (max_T) finds too few of them to time
      continue
    # median_seconds' warm-up call compiles every shape this set needs; then no compilation is timed.
    seconds = bench.median_seconds(lambda: predictor.predict(subset), max(1, config.repeats // 3))
    rows.append(
      {"family": family, "n": len(subset), "max_T": max(map(len, subset)), "per_s": len(subset) / seconds}
    )
    log(rows[-1])
  return rows


def export_rows(config: SuiteConfig, log) -> dict:
  """Exported graphs (andi_jax.export, untrained weights, the folds averaged) against the JAX forward that
  `predict` runs and, for the LSTM, the seed's PyTorch models: each side on the same standardised rows of
  T points at the graph's width, timed in alternating blocks; and each family's export time and size."""
  import tempfile

  from andi_jax import infer
  from andi_jax.methods.per_length import CLIP, SCALE

  speed, artefacts = [], []
  for family in config.export_families or config.families:
    Ts = [T for T in config.export_T if T <= dict(config.max_T).get(family, config.export_T[-1])]
    model, _ = build_model(family)
    ens = Ensemble(model, TrainConfig())
    if family == "lstm":  # seed 001's method: a model set per trained length
      predictor = infer.Predictor(
        model, np.array(Ts), {T: ens.init(config.folds, T).params for T in Ts}, SCALE, CLIP
      )
    else:
      predictor = infer.AllLengthsPredictor(model, ens.init(config.folds, 64).params, task=1, classes=None)
    graphs = {}
    with tempfile.TemporaryDirectory() as tmp:
      for fmt in graph_export.FORMATS:
        out = os.path.join(tmp, fmt)
        start = time.perf_counter()
        meta = graph_export.export(predictor, fmt, out, max_length=max(Ts))
        seconds = time.perf_counter() - start
        files = [os.path.join(out, f) for f in meta["graphs"].values()]
        size = sum(os.path.getsize(f) for f in files)
        artefacts.append(
          {"family": family, "format": fmt, "graphs": len(files), "seconds": seconds, "mb": size / 1e6}
        )
        log(artefacts[-1])
        graphs[fmt] = {
          int(w): graph_export.load_graph(fmt, os.path.join(out, f)) for w, f in meta["graphs"].items()
        }
    for T in Ts:
      width = T if family == "lstm" else infer.bucket_of(T)
      params = predictor.params[T] if family == "lstm" else predictor.params
      for B in config.export_batches:
        x = np.zeros((B, width), np.float32)
        x[:, width - T :] = bench.walks_and_alphas(B, T)[0]
        length = np.full(B, T, np.int32)
        sides = {
          "jax": lambda: predictor.forward(params, x, length),
          "onnx": lambda: graphs["onnx"][width](x, length),
          "stablehlo": lambda: graphs["stablehlo"][width](x, length),
        }
        if family == "lstm" and config.torch and bench_torch.available():
          sides["torch"] = bench_torch.infer_call(x, B, config.folds)
        seconds = bench.interleaved_seconds(list(sides.values()), repeats=3, calls_per_turn=config.repeats)
        speed.append({"family": family, "T": T, "batch": B, **{k: B / t for k, t in zip(sides, seconds)}})
        log(speed[-1])
  return {"speed": speed, "artefacts": artefacts}


def time_to_accuracy(config: SuiteConfig, log) -> dict:
  """Wall time to validation MAE <= target at T=100 on the same recipe data, the seed's loop on each side."""
  from andi_jax.data.recipe import Recipe, generate

  ds = generate(Recipe(n=config.tta_n, seed=7, keep=100), progress=False)
  x = standardize(ds.x[:, 0])
  y = ds.alpha.astype(np.float32)
  n_val = len(y) // 5
  out = {"target": config.tta_target, "n_train": len(y) - n_val, "T": 100}
  model, _ = build_model("lstm")
  train_cfg = TrainConfig(max_epochs=config.tta_max_epochs, max_reductions=config.tta_max_epochs)
  splits = {
    "jax_one": (np.arange(n_val, len(y))[None], np.arange(n_val)[None]),
    "jax_5fold": kfold_indices(len(y), 5, 0),
  }
  for name in config.tta_runs:
    tr, va = splits[name]
    data = EnsembleData(
      x=x[None],
      length=np.full((1, len(y)), 100, np.int32),
      y=y,
      group=np.zeros(len(tr), int),
      train_idx=tr,
      val_idx=va,
    )
    ens = Ensemble(model, train_cfg)
    fit(ens, data, max_steps=2, progress=False)  # compile training and validation outside the timed run
    ens.validate(ens.init(len(tr), 100).params, data)
    start = time.perf_counter()
    result = fit(ens, data, progress=False, stop_at=config.tta_target)
    maes = [max(h["val_metric"]) for h in result.history]
    out[name] = {
      "seconds": time.perf_counter() - start,
      "epochs": len(maes),
      "val_mae": maes,
      "reached": maes[-1] <= config.tta_target,
    }
    log({name: out[name]})
  if config.torch and bench_torch.available():
    out["torch_one"] = bench_torch.time_to_mae(
      x[n_val:], y[n_val:], x[:n_val], y[:n_val], config.tta_target, config.tta_max_epochs
    )
    log({"torch_one": out["torch_one"]})
  return out


def scaling_rows(config: SuiteConfig, log) -> list[dict]:
  """The LSTM ensemble's step at scaling_T against its number of models; beside it (torch installed) the
  seed's loop, as many separate PyTorch models stepped one after another, the two timed in alternating
  blocks. A row whose estimated memory exceeds memory_gb is skipped."""
  T, batch = config.scaling_T, config.batch
  model, _ = build_model("lstm")
  n_params = sum(v.size for v in jax.tree.leaves(Ensemble(model, TrainConfig()).init(1, T).params))
  x, y = bench.walks_and_alphas(batch, T)
  torch = config.torch and bench_torch.available()
  rows = []
  for m in config.scaling_models:
    # The LSTM's backward keeps about 21 float32 (batch, T, 64) buffers per model in flight: one model's
    # where the ensemble loops over its models (engine.over_models' "map", CPU), every model's under vmap.
    # Each model also holds its parameters, their gradient and Adam's two moments.
    in_flight = m if resolved_mode() == "vmap" else 1
    gb = (in_flight * batch * T * 64 * 21 + m * n_params * 4) * 4 / 1e9
    if gb > config.memory_gb:
      rows.append({"models": m, "skipped": f"needs about {gb:.0f} GB"})
      log(rows[-1])
      continue
    calls = [bench.ensemble_step("lstm", T, m, batch)] + (
      [bench_torch.train_step(x, y, batch, m)] if torch else []
    )
    # short calls alternate in blocks, as in torch_rows; from m > folds models a call is long enough
    # (25 steps and more) that switching runtimes costs little
    blocks = (
      dict(repeats=3, calls_per_turn=config.repeats) if m <= config.folds else dict(repeats=config.repeats)
    )
    seconds = bench.interleaved_seconds(calls, **blocks)
    rows.append({"models": m, "per_s": m * batch / seconds[0], "step_seconds": seconds[0]})
    if torch:
      rows[-1].update(torch_per_s=m * batch / seconds[1], torch_step_seconds=seconds[1])
    log(rows[-1])
  return rows


def _fmt(v):
  return f"{v:,.0f}" if v >= 100 else f"{v:,.1f}"


def write_report(results: dict, outdir) -> None:
  cfg = results["config"]
  lines = [
    "# Benchmarks (generated by `andi-jax benchmark all`; do not edit)",
    "",
    f"Machine: {results['machine']}.  ",
    f"Commit {results['commit']}, {results['date']}, "
    f"{results['mode']} mode, {results['seconds']:.0f} s ("
    + ", ".join(f"{k} {v:.0f} s" for k, v in results["section_seconds"].items())
    + ")."
    + "".join(f" Section {k} re-measured alone, {v}." for k, v in results.get("remeasured", {}).items()),
    "",
    "All rates are trajectories per second after compilation, synchronised, median of "
    f"{cfg['repeats']} repeats, measured in one run with nothing else running.",
    "",
    f"## 1. Training throughput, batch {cfg['batch']} per model",
    "",
    f"`one`: one model; `ensemble`: {cfg['folds']} folds as one jitted step (on CPU a lax.map loop "
    f"over the models, vmap on GPU: engine.over_models); `sequential`: {cfg['folds']} one-model steps "
    "called one after another; inference: the "
    f"fold-averaged forward of {cfg['folds']} models, batch {4 * cfg['batch']}.",
    "",
    "| model | T | one | ensemble | sequential | ensemble / sequential | inference |",
    "|---|---|---|---|---|---|---|",
  ]
  for r in results["throughput"]:
    lines.append(
      f"| {r['family']} | {r['T']} | {_fmt(r['one'])} | {_fmt(r['ensemble'])} | {_fmt(r['sequential'])} "
      f"| {r['ensemble'] / r['sequential']:.2f} | {_fmt(r['infer'])} |"
    )
  lstm = {r["T"]: r for r in results["throughput"] if r["family"] == "lstm"}
  ct = {r["T"]: r for r in results["throughput"] if r["family"] == "conv_transformer"}
  if lstm and ct:
    lines += [
      "",
      "ConvTransformer / LSTM, ensemble training: "
      + ", ".join(f"T={T} {ct[T]['ensemble'] / lstm[T]['ensemble']:.1f}x" for T in sorted(lstm) if T in ct)
      + ".",
    ]
  lines += ["", "## 2. The seed's PyTorch LSTM, one model, same arrays", ""]
  if results.get("torch"):
    lines += [
      "Training: one PyTorch model (the seed trains its models one after another) against the JAX "
      f"{cfg['folds']}-model "
      "ensemble, both in trajectories trained per second (the ensemble's summed over its models). "
      f"Inference: the mean of {cfg['folds']} models' outputs on "
      "both sides. Each PyTorch figure is timed in alternating blocks with the JAX figure beside it. "
      "PyTorch runs with denormals "
      "flushed to zero, as XLA does (bench_torch._torch). Products alone: the JAX ensemble step's matrix "
      "products "
      "and nothing else (bench.lstm_products_step, timed in the same blocks); its ratio to PyTorch is the "
      "most "
      f"a training step that runs these products through XLA could reach.",
      "",
      "| T | PyTorch train | JAX ensemble train | JAX / PyTorch | products alone | their / PyTorch (ceiling) "
      "| PyTorch inference | JAX inference | JAX / PyTorch |",
      "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["torch"]:
      lines.append(
        f"| {r['T']} | {_fmt(r['train'])} | {_fmt(r['jax_train'])} | {r['jax_train'] / r['train']:.2f} | "
        f"{_fmt(r['jax_products'])} | {r['jax_products'] / r['train']:.2f} | "
        f"{_fmt(r['infer'])} | {_fmt(r['jax_infer'])} | {r['jax_infer'] / r['infer']:.2f} |"
      )
  else:
    lines.append('Not measured: torch is not installed (`pip install ".[bench]"`).')
  lines += [
    "",
    f"## 3. End-to-end inference, {cfg['ragged_n']} ragged trajectories (lengths 10-{cfg['ragged_max']}) in "
    "memory",
    "",
    "| model | trajectories (longest) | trajectories/s |",
    "|---|---|---|",
  ]
  lines += [f"| {r['family']} | {r['n']} ({r['max_T']}) | {_fmt(r['per_s'])} |" for r in results["inference"]]
  lines += export_lines(results.get("export"), cfg["folds"])
  if results.get("generation"):
    lines += [
      "",
      "## 4. Data generation, 1D recipe (simulate, normalise, noise, factor)",
      "",
      "| model | T | andi-datasets, parallel generator | JAX generator | JAX / andi-datasets |",
      "|---|---|---|---|---|",
    ]
    for r in results["generation"]:
      lines.append(
        f"| {r['model']} | {r['T']} | {_fmt(r['andi_per_s'])} | {_fmt(r['jax_per_s'])} | "
        f"{r['jax_per_s'] / r['andi_per_s']:.1f} |"
      )
  if results.get("onthefly"):
    lines += [
      "",
      f"### Training on batches generated inside the step ({cfg['folds']}-model ensemble, recipe "
      "simulated at T=1000 each step; its steps timed in turn with steps on stored arrays)",
      "",
      "A number in column T: every model at that length (per-length training, the LSTM's method). "
      "A range: all-lengths training (`--lengths all`, the ConvTransformer's method), one bucket of "
      "lengths per step, padded to its width; the mix weighs each bucket's step time by its share of "
      "the steps (its share of the lengths 10-999).",
      "",
      "On the fly, a stream per model: each model's batch simulated from its own key (`--streams` "
      "left at one per fold). One stream: the models train on the same fresh trajectories each step "
      "(`--streams 1`), one simulation for all of them.",
      "",
      "| model | T | stored arrays | on the fly, a stream per model | / stored | on the fly, one stream "
      "| / stored |",
      "|---|---|---|---|---|---|---|",
    ]
    for r in results["onthefly"]:
      lines.append(
        f"| {r['family']} | {r['T']} | {_fmt(r['stored'])} | {_fmt(r['onthefly'])} | "
        f"{r['onthefly'] / r['stored']:.2f} | {_fmt(r['onthefly_shared'])} | "
        f"{r['onthefly_shared'] / r['stored']:.2f} |"
      )
  tta = results["time_to_accuracy"]
  lines += [
    "",
    f"## 5. Time to validation MAE {tta['target']} at T=100 ({tta['n_train']:,} training trajectories)",
    "",
    "| run | reached | epochs | seconds | last validation MAE |",
    "|---|---|---|---|---|",
  ]
  for name in ("jax_one", "jax_5fold", "torch_one"):
    if name in tta:
      r = tta[name]
      lines.append(
        f"| {name} | {r['reached']} | {r['epochs']} | {r['seconds']:.0f} | {r['val_mae'][-1]:.3f} |"
      )
  if "torch_one" in tta:
    t = tta["torch_one"]["seconds"]
    lines += ["", f"PyTorch / JAX time, one model: {t / tta['jax_one']['seconds']:.2f}."]
    if "jax_5fold" in tta:
      lines[-1] += (
        f" Five PyTorch runs (5 x the measured one) / the JAX 5-fold ensemble: "
        f"{5 * t / tta['jax_5fold']['seconds']:.2f}."
      )
  lines += [
    "",
    f"## 6. Ensemble scaling, LSTM, T={cfg['scaling_T']}",
    "",
    "JAX: one jitted step of an ensemble of this many models. PyTorch: the seed's loop, as many separate "
    "models each taking one step in turn; the two timed in alternating blocks.",
    "",
    "| models | JAX ensemble, trajectories/s | seconds per step | PyTorch loop, trajectories/s "
    "| seconds per round | JAX / PyTorch |",
    "|---|---|---|---|---|---|",
  ]
  for r in results["scaling"]:
    if "skipped" in r:
      lines.append(f"| {r['models']} | {r['skipped']} | - | - | - | - |")
      continue
    torch = (
      f"{_fmt(r['torch_per_s'])} | {r['torch_step_seconds']:.3f} | {r['per_s'] / r['torch_per_s']:.2f}"
      if "torch_per_s" in r
      else "- | - | -"
    )
    lines.append(f"| {r['models']} | {_fmt(r['per_s'])} | {r['step_seconds']:.3f} | {torch} |")
  with open(os.path.join(outdir, "RESULTS.md"), "w") as f:
    f.write("\n".join(lines) + "\n")


def export_lines(export, folds) -> list[str]:
  if not export:
    return [
      "",
      "### Exported graphs",
      "",
      "Not measured: the export extra is not installed (setup.sh installs it).",
    ]
  lines = [
    "",
    f"### Exported graphs (`andi-jax export`), {folds} folds averaged, untrained weights",
    "",
    "Trajectories per second through one graph at the row's width (the LSTM: its trained length T; the "
    "others: T's bucket), the same standardised rows on every side; `jax`: the forward `predict` runs; "
    "`onnx`: onnxruntime (CPU) on the ONNX graph; `stablehlo`: the deserialized jax.export graph; `torch`: "
    "the seed's PyTorch models.",
    "",
    "| model | T | batch | jax | onnx | stablehlo | torch | onnx / jax |",
    "|---|---|---|---|---|---|---|---|",
  ]
  lines += [
    f"| {r['family']} | {r['T']} | {r['batch']} | {_fmt(r['jax'])} | {_fmt(r['onnx'])} | "
    f"{_fmt(r['stablehlo'])} | {_fmt(r['torch']) if 'torch' in r else '-'} | {r['onnx'] / r['jax']:.2f} |"
    for r in export["speed"]
  ]
  lines += ["", "| model | format | graphs | export seconds | size (MB) |", "|---|---|---|---|---|"]
  lines += [
    f"| {r['family']} | {r['format']} | {r['graphs']} | {r['seconds']:.1f} | {r['mb']:.2f} |"
    for r in export["artefacts"]
  ]
  return lines


def plot(results: dict, outdir) -> None:
  plt = pyplot()
  fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
  for family in dict.fromkeys(r["family"] for r in results["throughput"]):
    rows = [r for r in results["throughput"] if r["family"] == family]
    a.plot([r["T"] for r in rows], [r["ensemble"] for r in rows], "o-", label=f"{family} ensemble")
  if results.get("torch"):
    a.plot(
      [r["T"] for r in results["torch"]], [r["train"] for r in results["torch"]], "k--", label="PyTorch LSTM"
    )
  a.set(xscale="log", yscale="log", xlabel="T", ylabel="training trajectories/s", title="Training throughput")
  a.legend()
  rows = [r for r in results["scaling"] if "per_s" in r]
  b.plot([r["models"] for r in rows], [r["step_seconds"] for r in rows], "o-", label="JAX ensemble")
  looped = [r for r in rows if "torch_step_seconds" in r]
  if looped:
    b.plot(
      [r["models"] for r in looped], [r["torch_step_seconds"] for r in looped], "k--", label="PyTorch loop"
    )
  b.legend()
  b.set(
    xscale="log",
    yscale="log",
    xlabel="models in the ensemble",
    ylabel="seconds per step",
    title=f"LSTM ensemble, T={results['config']['scaling_T']}",
  )
  fig.tight_layout()
  fig.savefig(os.path.join(outdir, "results.png"), dpi=120)
  plt.close(fig)


SECTIONS = (
  "throughput",
  "torch",
  "inference",
  "export",
  "generation",
  "onthefly",
  "time_to_accuracy",
  "scaling",
)
# settings that only one section reads: they may change when that section is re-measured (--only)
OWN_SETTINGS = {
  "generation": ("generation_T", "generation_n", "generation_models"),
  "onthefly": ("onthefly_T", "onthefly_families", "onthefly_buckets", "onthefly_widths"),
  "time_to_accuracy": ("tta_n", "tta_target", "tta_max_epochs", "tta_runs"),
  "scaling": ("scaling_models", "scaling_T", "memory_gb"),
  "export": ("export_families", "export_T", "export_batches"),
}


def run(config: SuiteConfig, outdir, mode: str = "full", log=print, only: tuple[str, ...] = ()) -> dict:
  """Measures every section (or only those named, into the results.json that a run in the same mode left
  in outdir, the others kept), then writes results.json, RESULTS.md and the PNG."""
  os.makedirs(outdir, exist_ok=True)
  path = os.path.join(outdir, "results.json")
  start = time.perf_counter()
  commit = current_commit()
  date = time.strftime("%Y-%m-%d %H:%M")
  if only:
    if unknown := set(only) - set(SECTIONS):
      raise ValueError(f"unknown sections {sorted(unknown)}; the suite's sections are {SECTIONS}")
    with open(path) as f:
      results = json.load(f)
    # a field added to SuiteConfig after that run was written had its default value in it
    saved = {**json.loads(json.dumps(dataclasses.asdict(SuiteConfig()))), **results["config"]}
    changed = {k for k, v in json.loads(json.dumps(dataclasses.asdict(config))).items() if saved[k] != v}
    if results["mode"] != mode or changed - {k for name in only for k in OWN_SETTINGS.get(name, ())}:
      raise ValueError(
        f"{path} holds a {results['mode']} run with another configuration: run the whole suite"
      )
    if results["machine"] != machine():
      raise ValueError(f"{path} was measured on another machine ({results['machine']}): run the whole suite")
    results["config"] = dataclasses.asdict(config)
  else:
    results = {
      "machine": machine(),
      "commit": commit,
      "date": date,
      "mode": mode,
      "config": dataclasses.asdict(config),
    }
  timings = results.setdefault("section_seconds", {})

  def section(name, fn):
    if only and name not in only:
      return
    t = time.perf_counter()
    results[name] = fn()
    timings[name] = time.perf_counter() - t
    if only:
      results.setdefault("remeasured", {})[name] = f"commit {commit}, {date}"
    # rewritten after every section: a run stopped late keeps what it measured
    with open(path, "w") as f:
      json.dump(results, f, indent=1, default=float)

  section("throughput", lambda: throughput_rows(config, log))
  if config.torch and bench_torch.available():
    section("torch", lambda: torch_rows(config, log))
  section("inference", lambda: inference_rows(config, log))
  if config.export_T and graph_export.available():
    section("export", lambda: export_rows(config, log))
  if config.generation_T:
    section(
      "generation",
      lambda: generation.throughput(
        Ts=config.generation_T,
        andi_n=config.generation_n,
        models=config.generation_models,
        repeats=config.repeats,
        andi_repeats=max(1, config.repeats // 3),
      ),
    )
  if config.onthefly_T:
    section("onthefly", lambda: onthefly_rows(config, log))
  section("time_to_accuracy", lambda: time_to_accuracy(config, log))
  section("scaling", lambda: scaling_rows(config, log))
  if not only:
    results["seconds"] = time.perf_counter() - start
  with open(path, "w") as f:
    json.dump(results, f, indent=1, default=float)
  write_report(results, outdir)
  plot(results, outdir)
  return results
