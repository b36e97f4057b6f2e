"""Batched inference: ragged trajectories (any length >= 10, dims 1-3) in, alpha per trajectory out.

Seed 001's rule: each axis is a 1D trajectory; a listed length uses that length's models, another
length T uses the nearest smaller trained length T_n on the first and the last T_n points (averaged);
folds are averaged; x 1.011; clipped to [0.05, 2]; the axes are averaged.

Fixed shapes: windows are left-padded to a few bucket lengths and cut into batches of one size, so
the jitted function compiles once per bucket, whatever the mix of lengths and batch counts.
"""

import dataclasses
from collections import defaultdict

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from tqdm.auto import tqdm

from andi_jax.data.io import MIN_POINTS
from andi_jax.data.preprocess import left_pad, standardize
from andi_jax.models import build_model
from andi_jax.train import checkpoint
from andi_jax.train.engine import over_models
from andi_jax.train.per_length import length_dir, read_meta

BUCKETS = (16, 32, 64, 128, 256, 512, 1024)
TRACES = defaultdict(int)  # bucket length -> times the batched forward was traced (tests read it)


@dataclasses.dataclass
class Predictor:
  model: object
  lengths: np.ndarray  # trained lengths, ascending
  params: dict  # length -> params stacked over folds
  scale: float
  clip: tuple[float, float]

  @classmethod
  def load(cls, path) -> "Predictor":
    meta = read_meta(path)
    model, _ = build_model(meta["model"], meta["model_config"])
    params = {L: jax.device_put(checkpoint.load_params(length_dir(path, L))) for L in meta["lengths"]}
    if not params:
      raise ValueError(f"{path}: no trained lengths in meta.json")
    return cls(model, np.array(sorted(params)), params, meta["scale"], tuple(meta["clip"]))

  def __post_init__(self):
    def forward(params_F, x_BxT, length_B):
      TRACES[x_BxT.shape[1]] += 1  # runs only while tracing
      apply = lambda p: self.model.apply({"params": p}, x_BxT, length_B, train=False)[:, 0]
      return over_models()(apply)(params_F).mean(0)  # average over folds

    self._forward = jax.jit(forward)
    # Rows sharded over the local devices, as in training (several host devices on a CPU).
    devices = np.array(jax.devices())
    self._rows = NamedSharding(Mesh(devices, ("batch",)), P("batch"))

  def batch_forward(self, params_F, x_BxT, length_B):
    """Fold-averaged raw outputs of one fixed-shape batch of standardised, left-padded windows."""
    if len(x_BxT) % self._rows.mesh.size == 0:
      x_BxT, length_B = jax.device_put((x_BxT, length_B), self._rows)
    return self._forward(params_F, x_BxT, length_B)

  def windows(self, series_T: np.ndarray) -> tuple[int, list[np.ndarray]]:
    """The trained length used for a 1D series and the (one or two) windows it is evaluated on."""
    T = len(series_T)
    if T < MIN_POINTS:
      raise ValueError(f"a trajectory has {T} points; at least {MIN_POINTS} are needed")
    usable = self.lengths[self.lengths <= T]
    if not len(usable):
      raise ValueError(f"a trajectory of {T} points is shorter than the shortest trained length "
                       f"{self.lengths[0]}")
    Tn = int(usable[-1])
    return Tn, [series_T] if Tn == T else [series_T[:Tn], series_T[T - Tn:]]

  def predict(self, trajectories, batch_size: int = 1024, progress: bool = False) -> np.ndarray:
    """alpha for each trajectory (list of (dim, T) or (T,) arrays), in input order."""
    # Flatten to 1D windows, remembering which (trajectory, axis) each belongs to.
    by_length = defaultdict(list)  # trained length -> [(series id, window)]
    series_owner = []
    for i, traj in enumerate(trajectories):
      traj = np.atleast_2d(np.asarray(traj, np.float64))
      for axis in traj:
        sid = len(series_owner)
        series_owner.append(i)
        Tn, wins = self.windows(axis)
        by_length[Tn] += [(sid, w) for w in wins]
    sums = np.zeros(len(series_owner))
    counts = np.zeros(len(series_owner))
    for Tn in tqdm(sorted(by_length), desc="predict", disable=not progress, leave=False):
      items = by_length[Tn]
      bucket = next(b for b in BUCKETS if b >= Tn) if Tn <= BUCKETS[-1] else Tn
      x, length = left_pad(standardize(np.stack([w for _, w in items])), bucket)
      ids = np.array([sid for sid, _ in items])
      for start in range(0, len(items), batch_size):
        xb, lb = x[start:start + batch_size], length[start:start + batch_size]
        n = len(xb)
        if n < batch_size:  # pad the last batch to the fixed shape
          xb = np.pad(xb, ((0, batch_size - n), (0, 0)))
          lb = np.pad(lb, (0, batch_size - n), constant_values=Tn)
        out = np.asarray(self.batch_forward(self.params[Tn], xb, lb))[:n]
        np.add.at(sums, ids[start:start + n], out)
        np.add.at(counts, ids[start:start + n], 1)
    alpha_series = np.clip(sums / counts * self.scale, *self.clip)
    owner = np.array(series_owner)
    return np.bincount(owner, alpha_series, len(trajectories)) / np.bincount(owner, minlength=len(trajectories))
