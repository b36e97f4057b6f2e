"""`andi-jax` command line: thin wrappers over the library."""

import argparse
import os
import signal
import sys

import numpy as np


def _lengths(text: str) -> tuple[int, ...]:
  if text == "hnu":
    from andi_jax.methods.per_length import HNU_LENGTHS

    return HNU_LENGTHS
  return tuple(int(v) for v in text.split(","))


def _check_counts(args):
  """--n and --workers (when given) count at least one."""
  for option, value in (("--n", args.n), ("--workers", args.workers)):
    if value is not None and value < 1:
      sys.exit(f"error: {option} {value}: must be at least 1")


def _check_in(path):
  """Refuses a missing input or a directory in its place."""
  if not os.path.exists(path):
    sys.exit(f"error: {path}: no such file")
  if os.path.isdir(path):
    sys.exit(f"error: {path}: is a directory, not a file")


def _check_out(path, what="--out", *, directory=False, inputs=()):
  """Refuses, before any work, an output that cannot be written as asked: a directory where a file goes (or
  the reverse), one of the inputs, or a location that is missing or not writable. An output directory's
  missing parents are created (as mkdir -p), so only its nearest existing ancestor must be writable."""
  if os.path.exists(path) and os.path.isdir(path) != directory:
    sys.exit(f"error: {what} {path}: " + ("exists and is not a directory" if directory else "is a directory"))
  if os.path.exists(path) and any(os.path.samefile(path, p) for p in inputs):
    sys.exit(f"error: {what} {path}: is the input file; writing there would destroy it")
  parent = path if os.path.isdir(path) else os.path.dirname(os.path.normpath(path)) or "."
  while directory and not os.path.exists(parent) and os.path.dirname(parent) not in ("", parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    sys.exit(f"error: {what} {path}: {parent} is not an existing directory")
  if not os.access(parent, os.W_OK | os.X_OK):
    sys.exit(f"error: {what} {path}: directory {parent} is not writable")


def cmd_generate(args):
  from andi_jax.data import io
  from andi_jax.data.recipe import Recipe, generate

  _check_counts(args)
  _check_out(args.out, directory=True)
  ds = generate(Recipe(n=args.n, dim=args.dim, seed=args.seed), workers=args.workers, cache_dir=args.cache)
  os.makedirs(args.out, exist_ok=True)
  io.write_trajectories(os.path.join(args.out, "task1.txt"), ds.trajectories())
  dims = np.full(len(ds), args.dim)
  io.write_labels(os.path.join(args.out, "ref1.txt"), dims, ds.alpha, fmt="%.2f")
  io.write_labels(os.path.join(args.out, "ref2.txt"), dims, ds.model, fmt="%d")
  print(f"wrote {len(ds)} trajectories ({args.dim}D) to {args.out}/task1.txt, ref1.txt, ref2.txt")


def cmd_train(args):
  from andi_jax.data.recipe import Recipe, generate
  from andi_jax.models import REGISTRY
  from andi_jax.train.engine import TrainConfig

  if args.task not in REGISTRY[args.model].tasks:
    sys.exit(f"error: model {args.model} does not serve Task {args.task}")
  onthefly = args.data == "onthefly"
  if args.streams is not None and (not onthefly or args.streams < 1 or args.folds % args.streams):
    sys.exit(f"error: --streams {args.streams} needs --data onthefly and must divide --folds ({args.folds})")
  _check_counts(args)
  _check_out(args.checkpoint, "--checkpoint", directory=True)
  steps_per_epoch = args.steps_per_epoch or (200 if onthefly else None)  # on the fly an epoch is a choice
  config = TrainConfig(
    task=args.task,
    batch_size=args.batch,
    max_epochs=args.epochs,
    seed=args.seed,
    checkpoint_every=args.checkpoint_every,
    steps_per_epoch=steps_per_epoch,
  )
  if args.lengths == "all":  # one model for lengths 10..999 (the recipe's cut lengths)
    from andi_jax.methods.all_lengths import prepare, train_all_lengths

    ds = generate(Recipe(n=args.n, dim=1, seed=args.seed), workers=args.workers, cache_dir=args.cache)
    x, length = prepare([t[0] for t in ds.trajectories()])
    out = train_all_lengths(
      x,
      length,
      ds.alpha if args.task == 1 else ds.model,
      args.checkpoint,
      task=args.task,
      model_name=args.model,
      folds=args.folds,
      train_config=config,
      time_budget=args.time_budget,
      onthefly=onthefly,
      streams=args.streams,
      force=args.force,
    )
    name = "MAE" if args.task == 1 else "error rate"
    print(
      f"validation {name} per fold {np.round(out['val_metric'], 4).tolist()} after {out['epochs']} "
      f"epochs (padding waste {out['padding_waste']:.0%})"
    )
    return
  if args.task != 1 or args.model != "lstm":
    sys.exit("error: per-length training is the seed-001 LSTM for Task 1; use --lengths all otherwise")
  from andi_jax.methods.per_length import train_lengths

  lengths = _lengths(args.lengths)
  ds = generate(
    Recipe(n=args.n, dim=1, seed=args.seed, keep=max(lengths)), workers=args.workers, cache_dir=args.cache
  )
  rows = train_lengths(
    ds.x[:, 0],
    ds.alpha,
    lengths,
    args.checkpoint,
    folds=args.folds,
    train_config=config,
    time_budget=args.time_budget,
    onthefly=onthefly,
    streams=args.streams,
    force=args.force,
  )
  for r in rows:
    print(
      f"length {r['length']:4d}: validation MAE {r['val_mae']:.4f} after {r['epochs']} epochs "
      f"(group {r['group']}, padding waste {r['padding_waste']:.0%})"
    )


_INTERRUPTS = []  # SIGINTs received: a KeyboardInterrupt raised inside a destructor is lost, this is not


def _on_sigint(signum, frame):
  _INTERRUPTS.append(signum)
  raise KeyboardInterrupt


def cmd_predict(args):
  """Streams the input through the model a chunk at a time; every output is written into a temp file that
  replaces it only at the end, so an error or an interrupt leaves no partial output. Without --checkpoint
  the shipped model of --task predicts (Task 1 with a standard error per alpha)."""
  import contextlib
  import itertools

  from tqdm.auto import tqdm

  from andi_jax import infer, pretrained
  from andi_jax.data import io

  _check_in(args.input)
  _check_out(args.out, inputs=[args.input])
  if args.chunk < 1:
    sys.exit(f"error: --chunk {args.chunk}: must be at least 1")
  total = io.count_tracks(args.input)
  chunks = io.iter_tracks(args.input, args.chunk, gaps=args.gaps)
  first = next(chunks)  # the input's first errors before the checkpoint's
  predictor = infer.load(args.checkpoint) if args.checkpoint else pretrained.load(args.task)
  if predictor.task != args.task:
    sys.exit(f"error: {args.checkpoint} holds a Task {predictor.task} model; --task {args.task} was asked")
  with_se = args.task == 1 and getattr(predictor, "calibration", None) is not None
  table = args.out.lower().endswith(".csv")  # one CSV of track ids and predictions, else the challenge format
  # beside a challenge-format file: Task 2's class probabilities, Task 1's standard errors
  side = os.path.splitext(args.out)[0] + (".proba.csv" if args.task == 2 else ".se.csv")
  with_side = not table and (args.task == 2 or with_se)
  if with_side:
    _check_out(side, "--out's companion file", inputs=[args.input])
  classes = list(predictor.classes) if args.task == 2 else []
  values = ["alpha", *(["alpha_se"] if with_se else [])] if args.task == 1 else ["label", *classes]
  with contextlib.ExitStack() as stack:
    out = stack.enter_context(io.atomic_file(args.out))
    extra = stack.enter_context(io.atomic_file(side)) if with_side else None
    if table:
      out.write(",".join(["track_id", "dim", *values]) + "\n")
    if extra is not None:
      extra.write(",".join(["dim", *values]) + "\n")
    bar = stack.enter_context(tqdm(total=total, desc="predict", unit="traj", disable=None))
    n = 0
    for ids, trajs in itertools.chain([first], chunks):
      if _INTERRUPTS:
        raise KeyboardInterrupt
      pred = predictor.predict(trajs, first=n)
      dims = np.array([t.shape[0] for t in trajs])
      if args.task == 1:
        columns = [pred, predictor.standard_error(trajs, pred)] if with_se else [pred]
      else:
        columns = [pred.argmax(1), *pred.T]
      if table:
        lines = io.table_lines([ids, dims, *columns])
      else:  # alpha or the label
        lines = io.label_lines(args.out, dims, columns[0], fmt="%.4f" if args.task == 1 else "%d", first=n)
      if extra is not None:
        extra.writelines(line + "\n" for line in io.table_lines([dims, *columns]))
      out.writelines(line + "\n" for line in lines)
      n += len(trajs)
      bar.update(len(trajs))
  print(f"wrote {n} predictions to {args.out}" + (f" and {side}" if with_side else ""))


def cmd_export(args):
  from andi_jax import export, infer, pretrained

  if args.max_length < 10:
    sys.exit(f"error: --max-length {args.max_length}: must be at least 10")
  if args.checkpoint is not None:
    if not os.path.isdir(args.checkpoint):
      sys.exit(f"error: --checkpoint {args.checkpoint}: not a checkpoint directory")
    source = args.checkpoint
  else:
    task = {name: task for task, name in pretrained.NAMES.items()}[args.pretrained]
    source = pretrained.path(task)
  _check_out(args.out, directory=True)
  model = infer.load(source) if args.checkpoint is not None else pretrained.load(task)
  meta = export.export(model, args.format, args.out, max_length=args.max_length, source=source)
  widths = ", ".join(meta["graphs"])
  print(
    f"wrote {len(meta['graphs'])} {args.format} graphs ({meta['model']}, widths {widths}), export.json and "
    f"run_export.py to {args.out}"
  )


def cmd_models(args):
  from andi_jax import pretrained

  if args.card is not None:
    path = os.path.join(pretrained.path(args.card), "MODEL_CARD.md")
    try:
      with open(path) as f:
        print(f.read())
    except OSError as e:
      sys.exit(f"error: {path}: cannot read the model card ({e.strerror}); {pretrained.REINSTALL}")
    return
  for task, name in pretrained.NAMES.items():
    card = pretrained.card(task)
    metric = "mae" if task == 1 else "f1_micro"
    overall = {d: card["scores"][d][metric][0]["value"] for d in ("1", "2", "3")}
    score = f"1D test {'MAE' if task == 1 else 'micro-F1'} {overall['1']:.3f}"
    if task == 1:
      score += f" (TAMSD fit {card['scores']['1']['mae_tamsd'][0]['value']:.3f})"
    score += f", 2D {overall['2']:.3f}, 3D {overall['3']:.3f}"
    size = pretrained.size_bytes(task) / 1e6
    print(
      f"{name}: Task {task}, {card['model']} ({card['parameters']:,} parameters, {size:.1f} MB), "
      f"trained {card['train_minutes']:.0f} min on the fly; {score}\n"
      f"  model card: {os.path.join(pretrained.path(task), 'MODEL_CARD.md')} (andi-jax models --card {task})"
    )


def _layer(text):
  from andi_jax.models.base import Layer

  module, _, at = text.partition(":")
  return Layer(module, at or "output")


def cmd_explain(args):
  from andi_jax.data import io
  from andi_jax.explain.report import Classifier, explain

  _check_in(args.input)
  _check_out(args.out, directory=True)
  trajs = io.read_trajectories(args.input)
  try:
    classifier = Classifier.load(args.checkpoint)
    out = explain(
      trajs,
      classifier,
      args.out,
      layer=_layer(args.layer) if args.layer else None,
      max_figures=args.max_figures,
    )
  except ValueError as e:
    sys.exit(f"error: {e}")
  print(
    f"explained {out['n']} trajectories: {args.out}/explained.csv, {out['figures']} trajectory PNGs, "
    f"heat_by_class.png; predicted {out['counts']}"
  )


def _labels(path, task: int):
  """(dims, values) of a dim;value file; Task 2 values must be model indices."""
  from andi_jax.data import io
  from andi_jax.data.recipe import MODELS

  dims, values = io.read_labels(path)
  if task == 2:
    bad = np.flatnonzero((values != np.round(values)) | (values < 0) | (values >= len(MODELS)))
    if bad.size:
      sys.exit(
        f"error: {path}: line {bad[0] + 1}: Task 2 label {values[bad[0]]:g} is not an integer "
        f"0..{len(MODELS) - 1}"
      )
  return dims, values


def cmd_evaluate(args):
  from andi_jax import metrics
  from andi_jax.data import io

  for path in filter(None, (args.pred, args.ref, args.trajs)):
    _check_in(path)
  pred_dims, pred = _labels(args.pred, args.task)
  ref_dims, ref = _labels(args.ref, args.task)
  trajs = io.read_trajectories(args.trajs) if args.trajs else None
  counts = [(args.pred, len(pred), "lines"), (args.ref, len(ref), "lines")]
  if trajs is not None:
    counts.append((args.trajs, len(trajs), "trajectories"))
  if len({n for _, n, _ in counts}) > 1:
    sys.exit("error: counts differ: " + ", ".join(f"{path} has {n} {unit}" for path, n, unit in counts))
  differ = np.flatnonzero(pred_dims != ref_dims)
  if differ.size:
    i = differ[0]
    sys.exit(
      f"error: {args.pred}: line {i + 1}: dimension {pred_dims[i]}, but {args.ref} line {i + 1} has "
      f"dimension {ref_dims[i]}"
    )
  metric, name = (metrics.mae, "MAE") if args.task == 1 else (metrics.f1_micro, "F1 (micro)")
  lengths = np.array([t.shape[1] for t in trajs]) if trajs is not None else np.zeros(len(ref), int)
  rows = metrics.by_length(metric, pred, ref, lengths)
  print(f"| length bucket | n | {name} |\n|---|---|---|")
  for r in rows if args.trajs else rows[:1]:
    print(f"| {r['bucket']} | {r['n']} | {r['value']:.4f} |")


def cmd_benchmark(args):
  from andi_jax.bench import measure as bench

  if args.what == "all":
    from andi_jax.bench import suite as bench_suite

    mode = "quick" if args.quick else args.mode
    _check_out(args.out, directory=True)
    bench_suite.run(bench_suite.MODES[mode], args.out, mode=mode, only=tuple(args.only))
    print(f"wrote {os.path.join(args.out, 'RESULTS.md')}, results.json, results.png")
    return
  if args.what == "train":
    rate = bench.train_throughput(args.model, args.length, args.folds, args.batch, args.ensemble)
  else:
    rate = bench.infer_throughput(args.model, args.length, args.folds, args.batch)
  print(f"trajectories_per_s: {rate:.1f}")


def cmd_demo(args):
  from andi_jax.studies import task1

  _check_out(args.workdir, "--workdir", directory=True)
  config = task1.Task1Config(
    lengths=(10, 20, 50, 100), train_n=20_000, test_n=3_000, group_time_budget=90.0, shipped=True
  )
  summary = task1.run(config, args.workdir)
  print(
    "Held-out recipe trajectories (andi-datasets): the LSTMs trained just now, the TAMSD fit, and the "
    "shipped models (andi-jax models)\n"
  )
  print(summary["table"])
  s = summary["seconds"]
  print(f"\ndata {s['data']:.0f} s, training {s['train']:.0f} s, prediction {s['predict']:.1f} s")
  print(
    f"checkpoints: {os.path.join(args.workdir, 'lstm')}  plot: "
    f"{os.path.join(args.workdir, 'pred_vs_true.png')}"
  )


def entry():
  """The console script: huge pages, the host devices, then the command line."""
  from andi_jax import runtime

  runtime.with_huge_pages(["-m", "andi_jax.cli", *sys.argv[1:]])
  runtime.configure()
  main()


def main(argv=None):
  from andi_jax.models import REGISTRY

  parser = argparse.ArgumentParser(prog="andi-jax", description=__doc__)
  sub = parser.add_subparsers(dest="command", required=True)

  def data_args(p, n):
    p.add_argument("--n", type=int, default=n, help="number of recipe trajectories")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None, help="generator processes (default: all cores)")
    p.add_argument("--cache", default=None, help="directory caching generated datasets by recipe")

  p = sub.add_parser("generate", help="AnDi 2020 recipe dataset in the challenge text format")
  data_args(p, 10_000)
  p.add_argument("--dim", type=int, default=1, choices=(1, 2, 3))
  p.add_argument("--out", required=True, help="directory for task1.txt, ref1.txt, ref2.txt")
  p.set_defaults(func=cmd_generate)

  p = sub.add_parser(
    "train", help="seed-001 LSTMs per length and fold, or one model for all lengths per fold"
  )
  data_args(p, 20_000)
  p.add_argument(
    "--lengths",
    default="hnu",
    help="comma-separated lengths, 'hnu' for the seed's 43, or 'all': one model for 10..999",
  )
  p.add_argument("--model", default="lstm", choices=tuple(REGISTRY))
  p.add_argument("--task", type=int, default=1, choices=(1, 2), help="1: alpha; 2: diffusion model")
  p.add_argument("--folds", type=int, default=5)
  p.add_argument("--batch", type=int, default=512)
  p.add_argument(
    "--epochs", type=int, default=100, help="maximum epochs (early stopping usually ends sooner)"
  )
  p.add_argument("--time-budget", type=float, default=None, help="seconds of training per length group")
  p.add_argument("--checkpoint-every", type=int, default=200, help="steps between mid-epoch saves")
  p.add_argument(
    "--data",
    default="stored",
    choices=("stored", "onthefly"),
    help="onthefly: training batches simulated inside the jitted step (JAX generators); "
    "the --n generated trajectories then only validate",
  )
  p.add_argument(
    "--streams",
    type=int,
    default=None,
    help="on the fly: independent data streams, dividing --folds (default: one per fold; the "
    "lengths trained together share them); 1: the folds train on the same fresh "
    "trajectories, one simulation a step for all",
  )
  p.add_argument(
    "--steps-per-epoch",
    type=int,
    default=None,
    help="steps between validations (default: one pass over the data; 200 on the fly)",
  )
  p.add_argument("--checkpoint", required=True, help="output directory (resumed if it holds a run)")
  p.add_argument(
    "--force",
    action="store_true",
    help="resume a run even though its training or model configuration differs from the saved one",
  )
  p.set_defaults(func=cmd_train)

  p = sub.add_parser(
    "predict", help="alpha (task 1) or diffusion model (task 2) per trajectory of a .txt/.npy/.npz/.csv file"
  )
  p.add_argument("input")
  p.add_argument(
    "--checkpoint",
    default=None,
    help="a directory written by `andi-jax train` (default: the shipped model of --task; andi-jax models)",
  )
  p.add_argument("--task", type=int, default=1, choices=(1, 2))
  p.add_argument(
    "--out",
    required=True,
    help="submission file of dim;value lines (task 1 with the shipped model: also OUT.se.csv of standard "
    "errors; task 2: OUT.proba.csv of class probabilities); a .csv: one row per trajectory with its track "
    "id, dim and prediction (alpha and its standard error; or label and probabilities)",
  )
  p.add_argument(
    "--chunk",
    type=int,
    default=10_000,
    help="trajectories read and predicted at a time (.txt and .npy stream: memory holds one chunk)",
  )
  p.add_argument(
    "--gaps",
    default="refuse",
    choices=("refuse", "split"),
    help=".csv input: a track whose frames skip some is refused, or split into pieces ID:0, ID:1, ...",
  )
  p.set_defaults(func=cmd_predict)

  p = sub.add_parser("models", help="the shipped models and their test scores (model cards)")
  p.add_argument("--card", type=int, choices=(1, 2), default=None, help="print this task's whole model card")
  p.set_defaults(func=cmd_models)

  p = sub.add_parser(
    "explain", help="Grad-CAM of a classifier on the trajectories of a .txt/.npy/.npz/.csv file: PNGs"
  )
  p.add_argument("input")
  p.add_argument(
    "--checkpoint", required=True, help="a Task 2 (train --lengths all --task 2) or eight-class checkpoint"
  )
  p.add_argument(
    "--out", required=True, help="directory for explained.csv, trajectory_NNNN.png, heat_by_class.png"
  )
  p.add_argument(
    "--layer",
    default=None,
    help="submodule whose output is explained, e.g. stage3, or NAME:input for its input "
    "(default: the model family's registered layer: the ResNet's last stage, the "
    "ConvTransformer's words)",
  )
  p.add_argument("--max-figures", type=int, default=50, help="trajectory PNGs for the first this many")
  p.set_defaults(func=cmd_explain)

  p = sub.add_parser("evaluate", help="score a submission against a reference")
  p.add_argument("--pred", required=True)
  p.add_argument("--ref", required=True)
  p.add_argument("--task", type=int, default=1, choices=(1, 2))
  p.add_argument("--trajs", default=None, help="the trajectories file, for per-length buckets")
  p.set_defaults(func=cmd_evaluate)

  p = sub.add_parser(
    "export", help="a checkpoint as ONNX or StableHLO graphs, to run without JAX or andi_jax"
  )
  which = p.add_mutually_exclusive_group(required=True)
  which.add_argument("--checkpoint", help="a directory written by `andi-jax train`")
  which.add_argument("--pretrained", choices=("task1", "task2"), help="a shipped model (`andi-jax models`)")
  p.add_argument("--format", required=True, choices=("onnx", "stablehlo"))
  p.add_argument("--out", required=True, help="a new directory: the graphs, export.json, run_export.py")
  p.add_argument(
    "--max-length", type=int, default=1024, help="all-lengths models: the longest trajectory the graphs take"
  )
  p.set_defaults(func=cmd_export)

  p = sub.add_parser("benchmark", help="the whole suite (all), or one training or inference throughput")
  p.add_argument("what", choices=("all", "train", "infer"))
  p.add_argument(
    "--mode",
    default="full",
    choices=("quick", "medium", "full"),
    help="all: quick (a few minutes), medium (every section and T: 81-87 minutes on a 2-core AMD EPYC Zen 5, "
    "24-30 of them the 5-fold time to accuracy; 110 on a 2-core Xeon), full",
  )
  p.add_argument("--quick", action="store_true", help="all: the same as --mode quick")
  p.add_argument(
    "--out", default="benchmarks", help="all: directory for RESULTS.md, results.json, results.png"
  )
  p.add_argument(
    "--only",
    nargs="+",
    default=(),
    metavar="SECTION",
    help="all: re-measure these sections (throughput, torch, inference, generation, onthefly, "
    "time_to_accuracy, scaling) into --out's results.json of a run in the same mode",
  )
  p.add_argument("--model", default="lstm", choices=tuple(REGISTRY))
  p.add_argument("--length", type=int, default=100)
  p.add_argument("--folds", type=int, default=5)
  p.add_argument("--batch", type=int, default=512)
  p.add_argument(
    "--ensemble",
    default="auto",
    choices=("auto", "vmap", "map", "sequential"),
    help="folds as one step (vmap, map; auto: map on CPU, vmap elsewhere) or one model at a time",
  )
  p.set_defaults(func=cmd_benchmark)

  p = sub.add_parser("demo", help="generate, train, evaluate on a fresh held-out set, in minutes on a CPU")
  p.add_argument("--workdir", default="andi-jax-demo")
  p.set_defaults(func=cmd_demo)

  args = parser.parse_args(argv)
  from andi_jax.data.io import TrajectoryFormatError
  from andi_jax.data.preprocess import UnpredictableTrajectory
  from andi_jax.export import ExportError
  from andi_jax.train.checkpoint import CheckpointError
  from andi_jax.train.loop import ConfigMismatchError, NonFiniteError

  if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not when started with SIGINT ignored
    signal.signal(signal.SIGINT, _on_sigint)
  try:
    args.func(args)
  except (
    TrajectoryFormatError,
    OSError,
    ConfigMismatchError,
    NonFiniteError,
    CheckpointError,
    UnpredictableTrajectory,
    ExportError,
  ) as e:
    sys.exit(f"error: {e}")
  except KeyboardInterrupt:
    # Outputs in progress are already removed (io.atomic_file). Exit at once: tearing the interpreter down
    # under XLA's running threads can crash it.
    print(f"error: {args.command} interrupted; no partial output was kept", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)


if __name__ == "__main__":
  entry()
