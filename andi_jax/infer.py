"""Batched inference: ragged trajectories (any length >= 10, dims 1-3) in, one answer per trajectory out.

`load(dir)` picks the predictor a checkpoint directory describes: seed 001's per-length LSTMs
(Predictor) or one model for all lengths (AllLengthsPredictor: alpha, or the five class probabilities;
with a calibration table, as the shipped Task 1 model has, a standard error for each alpha).

Seed 001's rule: each axis is a 1D trajectory; a listed length uses that length's models, another
length T uses the nearest smaller trained length T_n on the first and the last T_n points (averaged);
folds are averaged; x 1.011; clipped to [0.05, 2]; the axes are averaged.

Fixed shapes: series are left-padded to a few widths (a per-length LSTM's own trained length; a
bucket for an all-lengths model) and cut into full batches plus one tail batch padded to a rung of
a short ladder (batch, batch/2, batch/4, batch/8), so the jitted function compiles at most four
times per width, whatever the mix of lengths and counts, and a small group is not padded to a
full batch.

A series (or seed 001 window) that is constant or not finite once standardised has no meaningful
answer: predict refuses it (UnpredictableTrajectory, naming the trajectory) before any model runs.
"""

import dataclasses
import os
from collections import defaultdict

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from andi_jax import uncertainty
from andi_jax.data.io import MIN_POINTS
from andi_jax.data.preprocess import UnpredictableTrajectory, left_pad, refuse_unpredictable, standardize
from andi_jax.methods.all_lengths import params_dir
from andi_jax.methods.per_length import CLIP, length_dir
from andi_jax.models import build_model
from andi_jax.train import checkpoint
from andi_jax.train.checkpoint import CheckpointError, read_meta
from andi_jax.train.engine import over_models

BUCKETS = (16, 32, 64, 128, 256, 512, 1024)  # forward-only shapes: cheap to compile, little padding
RUNGS = 4  # tail batches are padded to batch_size >> k for some k < RUNGS


def bucket_of(T: int) -> int:
  """The fixed width a series of T points is padded to: a bucket, or a multiple of the widest."""
  return next((b for b in BUCKETS if b >= T), -(-T // BUCKETS[-1]) * BUCKETS[-1])


class FoldForward:
  """The jitted fold-averaged forward of fixed-shape batches (class probabilities for classifiers)."""

  def __init__(self, model, classify: bool):
    self.traces = defaultdict(int)  # (width, batch rows) -> times the batched forward was traced

    def forward(params_F, x_BxT, length_B):
      self.traces[x_BxT.shape[::-1]] += 1  # runs only while tracing

      def apply(p):
        out = model.apply({"params": p}, x_BxT, length_B, train=False)
        return jax.nn.softmax(out) if classify else out[:, 0]

      return over_models()(apply)(params_F).mean(0)  # average over folds

    self._forward = jax.jit(forward)
    # Rows sharded over the local devices, as in training (several host devices on a CPU).
    devices = np.array(jax.devices())
    self._rows = NamedSharding(Mesh(devices, ("batch",)), P("batch"))

  def __call__(self, params_F, x_BxT, length_B):
    if len(x_BxT) % self._rows.mesh.size == 0:
      x_BxT, length_B = jax.device_put((x_BxT, length_B), self._rows)
    return self._forward(params_F, x_BxT, length_B)

  def run(self, params_F, x_NxT, length_N, batch_size: int) -> np.ndarray:
    """Outputs for all rows: full batches, then the rest padded to the smallest rung that holds it."""
    outs = []
    for start in range(0, len(x_NxT), batch_size):
      xb, lb = x_NxT[start : start + batch_size], length_N[start : start + batch_size]
      n = len(xb)
      rows = min((r for r in (max(batch_size >> k, 1) for k in range(RUNGS)) if r >= n))
      if n < rows:
        xb = np.pad(xb, ((0, rows - n), (0, 0)))
        lb = np.pad(lb, (0, rows - n), constant_values=lb[0])
      outs.append(np.asarray(self(params_F, xb, lb))[:n])
    return np.concatenate(outs)


def _series(trajectories, first: int = 0):
  """Each axis of each trajectory as a 1D float64 series, the index of the trajectory it belongs to, and
  name(series id, start, stop) for messages: "trajectory 3", "trajectory 3 (axis 1, points 0-44)", the
  trajectories numbered from `first`."""
  series, owner, axes = [], [], []
  for i, traj in enumerate(trajectories):
    try:
      with np.errstate(over="ignore"):  # positions beyond float64 become inf, refused as not finite
        traj = np.atleast_2d(np.asarray(traj, np.float64))
    except OverflowError:  # Python ints beyond float64
      raise UnpredictableTrajectory(f"trajectory {first + i}: positions beyond the float64 range") from None
    for a, axis in enumerate(traj):
      if len(axis) < MIN_POINTS:
        raise ValueError(f"trajectory {first + i} has {len(axis)} points; at least {MIN_POINTS} are needed")
      series.append(axis)
      owner.append(i)
      axes.append(a)
  owner = np.array(owner, dtype=np.int64)  # int even when empty
  dims = np.bincount(owner)

  def name(sid, start=None, stop=None):
    where = [f"axis {axes[sid]}"] if dims[owner[sid]] > 1 else []
    where += [f"points {start}-{stop - 1}"] if start is not None else []
    return f"trajectory {first + owner[sid]}" + (f" ({', '.join(where)})" if where else "")

  return series, owner, name


def _standardized(rows) -> list[np.ndarray]:
  """standardize of each 1D row, computed for all rows of one length at once."""
  out, by_length = [None] * len(rows), defaultdict(list)
  for i, r in enumerate(rows):
    by_length[len(r)].append(i)
  for ids in by_length.values():
    for i, z in zip(ids, standardize(np.stack([rows[i] for i in ids]))):
      out[i] = z
  return out


def _checked_series(trajectories, first: int = 0):
  """_series and each series standardised, after refusing (UnpredictableTrajectory) the first series that
  is constant or not finite once standardised."""
  series, owner, name = _series(trajectories, first)
  standardized = _standardized(series)
  refuse_unpredictable(standardized, name)
  return series, standardized, owner, name


def _mean_by_owner(values, owner, n):
  """Average of per-series values (n_series,) or (n_series, C) over each trajectory's axes."""
  sums = np.zeros((n,) + values.shape[1:])
  np.add.at(sums, owner, values)
  return sums / np.bincount(owner, minlength=n).reshape((n,) + (1,) * (values.ndim - 1))


def load(path):
  """The predictor a checkpoint directory's meta.json describes; CheckpointError when it is broken."""
  method = read_meta(path, "method")["method"]
  if method == "hnu-per-length":
    return Predictor.load(path)
  if method == "all-lengths":
    return AllLengthsPredictor.load(path)
  raise CheckpointError(
    f"{os.path.join(path, 'meta.json')}: unknown method {method!r}; known: 'hnu-per-length', 'all-lengths'"
  )


def _model(path, meta):
  """The network meta.json describes, or a CheckpointError naming the file."""
  try:
    return build_model(meta["model"], meta["model_config"])[0]
  except (TypeError, ValueError) as e:
    raise CheckpointError(f"{os.path.join(path, 'meta.json')}: cannot build its model ({e})") from None


@dataclasses.dataclass
class Predictor:
  """Seed 001's per-length LSTMs (Task 1)."""

  model: object
  lengths: np.ndarray  # trained lengths, ascending
  params: dict  # length -> params stacked over folds
  scale: float
  clip: tuple[float, float]
  task = 1

  @classmethod
  def load(cls, path) -> "Predictor":
    meta = read_meta(path, "model", "model_config", "lengths", "scale", "clip")
    model = _model(path, meta)
    params = {L: jax.device_put(checkpoint.load_params(length_dir(path, L))) for L in meta["lengths"]}
    if not params:
      raise ValueError(f"{path}: no trained lengths in meta.json")
    return cls(model, np.array(sorted(params)), params, meta["scale"], tuple(meta["clip"]))

  def __post_init__(self):
    self.forward = FoldForward(self.model, classify=False)

  def windows(self, series_T: np.ndarray) -> tuple[int, list[np.ndarray]]:
    """The trained length used for a 1D series and the (one or two) windows it is evaluated on."""
    T = len(series_T)
    usable = self.lengths[self.lengths <= T]
    if not len(usable):
      raise ValueError(
        f"a trajectory of {T} points is shorter than the shortest trained length {self.lengths[0]}"
      )
    Tn = int(usable[-1])
    return Tn, [series_T] if Tn == T else [series_T[:Tn], series_T[T - Tn :]]

  def predict(
    self, trajectories, batch_size: int = 1024, progress: bool = False, first: int = 0
  ) -> np.ndarray:
    """alpha for each trajectory (list of (dim, T) or (T,) arrays), in input order.

    UnpredictableTrajectory, before any model runs, for a series or a window of one that is constant or
    not finite once standardised."""
    series, _, owner, name = _checked_series(trajectories, first)
    plan = []  # (series id, trained length, first point) of each window
    for sid, s in enumerate(series):
      Tn, wins = self.windows(s)
      plan += [(sid, Tn, start) for start in (0, len(s) - Tn)[: len(wins)]]  # first Tn points, last Tn
    windows = _standardized([series[sid][start : start + Tn] for sid, Tn, start in plan])
    refuse_unpredictable(windows, lambda k: name(plan[k][0], plan[k][2], plan[k][2] + plan[k][1]))
    by_length = defaultdict(list)  # trained length -> indices into plan
    for k, (_, Tn, _) in enumerate(plan):
      by_length[Tn].append(k)
    sums, counts = np.zeros(len(series)), np.zeros(len(series))
    for Tn in tqdm(sorted(by_length), desc="predict", disable=not progress, leave=False):
      ks = by_length[Tn]
      x, length = left_pad([windows[k] for k in ks], Tn)  # the trained shape
      ids = np.array([plan[k][0] for k in ks])
      np.add.at(sums, ids, self.forward.run(self.params[Tn], x, length, batch_size))
      np.add.at(counts, ids, 1)
    alpha_series = np.clip(sums / counts * self.scale, *self.clip)
    return _mean_by_owner(alpha_series, owner, len(trajectories))


@dataclasses.dataclass
class AllLengthsPredictor:
  """One model for every length (ConvTransformer or LSTM), folds averaged, axes averaged."""

  model: object
  params: dict  # stacked over folds
  task: int  # 1: alpha; 2: probabilities of the five models
  classes: tuple[str, ...] | None
  calibration: dict | None = None  # Task 1: standard-error tables by dimension (andi_jax/uncertainty.py)

  @classmethod
  def load(cls, path) -> "AllLengthsPredictor":
    meta = read_meta(path, "model", "model_config", "task", "classes")
    model = _model(path, meta)
    params = jax.device_put(checkpoint.load_params(params_dir(path)))
    classes = tuple(meta["classes"]) if meta["classes"] else None
    return cls(model, params, meta["task"], classes, meta.get("calibration"))

  def __post_init__(self):
    self.forward = FoldForward(self.model, classify=self.task == 2)

  def predict(
    self, trajectories, batch_size: int = 1024, progress: bool = False, first: int = 0
  ) -> np.ndarray:
    """Task 1: alpha (n,) clipped to the challenge range; task 2: class probabilities (n, 5).

    UnpredictableTrajectory, before any model runs, for a series constant or not finite once standardised."""
    series, standardized, owner, _ = _checked_series(trajectories, first)
    width = np.array([bucket_of(len(s)) for s in series])
    out = np.zeros((len(series), len(self.classes)) if self.task == 2 else len(series))
    for w in tqdm(np.unique(width), desc="predict", disable=not progress, leave=False):
      ids = np.flatnonzero(width == w)
      x, length = left_pad([standardized[i] for i in ids], int(w))
      out[ids] = self.forward.run(self.params, x, length, batch_size)
    out = _mean_by_owner(out, owner, len(trajectories))
    return np.clip(out, *CLIP) if self.task == 1 else out

  def standard_error(self, trajectories, alpha) -> np.ndarray:
    """Each predicted alpha's standard error, from the calibration table of its trajectory's dimension, its
    length and alpha itself. ValueError without a table for the model or for that dimension."""
    if self.calibration is None:
      raise ValueError("this model has no calibrated standard error (only the shipped Task 1 model has)")
    shapes = np.array([np.atleast_2d(np.asarray(t)).shape for t in trajectories]).reshape(-1, 2)
    se = np.zeros(len(shapes))
    for dim in np.unique(shapes[:, 0]):
      table = self.calibration["se"].get(str(dim))
      if table is None:
        raise ValueError(f"no standard-error calibration for {dim}D trajectories")
      rows = shapes[:, 0] == dim
      se[rows] = uncertainty.lookup(
        table,
        np.asarray(alpha)[rows],
        shapes[rows, 1],
        self.calibration["length_edges"],
        self.calibration["alpha_edges"],
      )
    return se
