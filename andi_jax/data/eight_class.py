"""The seed's 8-class scheme (Bae, Baek & Jeong): 2D trajectories of eight diffusion classes.

Classes (CLASSES): sub-diffusive ATTM, CTRW, FBM, SBM with alpha ~ U(0.1, 0.9); super-diffusive FBM,
LW, SBM with alpha ~ U(1.1, 1.9); Brownian motion. Brownian motion is FBM at alpha = 1 exactly:
andi_jax.data.simulate's FBM core takes its H = 1/2 branch there and draws independent N(0, 1)
increments per axis, the reference's stochastic.BrownianMotion up to a scale the normalisation removes.

Per row: length L uniform in min_length..max_length, then the first L points of a trajectory simulated
on device at T = max_length (simulate's cores, 2D), each axis normalised over its L - 1 increments to
unit standard deviation (the reference's normalize; an axis of equal increments is left unscaled, as
in recipe._normalize). The reference simulates each row at its own T; the prefix has the same law for
these five models (stationary FBM increments, SBM's fixed variance schedule, waits and flights cut at
T only beyond the prefix), and the normalisation sees the same L points. A row that never moves within
L (a CTRW whose first wait outlasts it) is redrawn with the same alpha and L, as the reference does.

Rows are stored as the project stores series: x (N, 2, W) left-padded with zeros, length (N,). The
model sees `minmax(x, length)`: each axis scaled to [0, 1] over the row's points (the reference scales
over its zero-padded row of 1000, whose zeros equal the first point and so change nothing).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from andi_jax.data.simulate import increments

CLASSES = ("ATTM sub", "CTRW sub", "FBM sub", "SBM sub", "FBM super", "LW super", "SBM super", "BM")
_SOURCES = (
  ("attm", (0.1, 0.9)),
  ("ctrw", (0.1, 0.9)),
  ("fbm", (0.1, 0.9)),
  ("sbm", (0.1, 0.9)),
  ("fbm", (1.1, 1.9)),
  ("lw", (1.1, 1.9)),
  ("sbm", (1.1, 1.9)),
  ("fbm", (1.0, 1.0)),
)
_CHUNK = 512  # rows simulated per jitted call: one shape per model, whatever n


@dataclasses.dataclass
class Trajectories:
  x: np.ndarray  # (N, 2, W) float32 normalised positions, left-padded
  length: np.ndarray  # (N,) int32
  label: np.ndarray  # (N,) int32 index into CLASSES
  alpha: np.ndarray  # (N,) float32

  def __len__(self) -> int:
    return len(self.label)

  def subset(self, idx) -> "Trajectories":
    return Trajectories(self.x[idx], self.length[idx], self.label[idx], self.alpha[idx])


@functools.lru_cache(maxsize=None)  # one compilation per (model, T) for every data set
def _simulator(model: str, T: int):
  return jax.jit(jax.vmap(lambda k, a: increments(k, model, a, T, dim=2)))


def _normalise(dx_Nx2xS, steps_N):
  """Unit standard deviation of each axis's first steps_N increments; positions from 0, zeros after."""
  dx = dx_Nx2xS.astype(np.float64)
  valid = (np.arange(dx.shape[-1]) < steps_N[:, None])[:, None]
  dx = np.where(valid, dx, 0.0)
  mean = dx.sum(-1, keepdims=True) / steps_N[:, None, None]
  std = np.sqrt(np.where(valid, (dx - mean) ** 2, 0.0).sum(-1, keepdims=True) / steps_N[:, None, None])
  peak = np.abs(dx).max(-1, keepdims=True)
  flat = std <= 1e-9 * peak  # equal increments (a one-flight LW axis): std is rounding noise
  dx = dx / np.where(flat | (std == 0), 1.0, std)
  return np.concatenate([np.zeros(dx.shape[:-1] + (1,)), np.cumsum(dx, -1)], -1)


def _left_align(pos_Nx2xT, length_N):
  """Rows whose points fill the first length columns -> the same points in the last ones, zeros before."""
  T = pos_Nx2xT.shape[-1]
  src = np.arange(T) - (T - length_N[:, None])
  out = np.take_along_axis(pos_Nx2xT, np.maximum(src, 0)[:, None], -1)
  return np.where((src >= 0)[:, None], out, 0.0)


def generate(
  n_per_class: int,
  *,
  min_length: int = 10,
  max_length: int = 1000,
  seed: int = 0,
  classes=range(len(CLASSES)),
) -> Trajectories:
  """n_per_class rows of each class, in class order; a function of the arguments only."""
  if not 10 <= min_length <= max_length:
    raise ValueError(f"need 10 <= min_length <= max_length, got {min_length}, {max_length}")
  T = max_length
  xs, lengths, labels, alphas = [], [], [], []
  for c in classes:
    model, (lo, hi) = _SOURCES[c]
    rng = np.random.default_rng([seed, c])
    alpha = rng.uniform(lo, hi, n_per_class).astype(np.float32)
    length = rng.integers(min_length, max_length + 1, n_per_class).astype(np.int32)
    sim = _simulator(model, T)
    x = np.zeros((n_per_class, 2, T), np.float32)
    pending, attempt = np.arange(n_per_class), 0
    while len(pending):
      rows = pending[:_CHUNK]
      keys = jax.random.split(
        jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), c), attempt), _CHUNK
      )
      a = np.resize(alpha[rows], _CHUNK)  # padded to the fixed chunk shape
      dx = np.asarray(sim(keys, jnp.asarray(a)))[: len(rows)]
      pos = _normalise(dx, length[rows] - 1)  # constant after the row's last point
      moved = np.abs(pos).max((1, 2)) > 0
      x[rows[moved]] = _left_align(pos[moved], length[rows[moved]])
      pending = np.concatenate([pending[_CHUNK:], rows[~moved]])
      attempt += 1
    xs.append(x)
    lengths.append(length)
    labels.append(np.full(n_per_class, c, np.int32))
    alphas.append(alpha)
  return Trajectories(
    np.concatenate(xs), np.concatenate(lengths), np.concatenate(labels), np.concatenate(alphas)
  )


def add_noise(x_Nx2xW, length_N, sigma: float, seed) -> np.ndarray:
  """Localisation noise N(0, sigma^2) on every coordinate of the rows' points (the seed's test noise);
  seed: anything numpy.random.default_rng takes."""
  noise = np.random.default_rng(seed).standard_normal(x_Nx2xW.shape).astype(np.float32)
  valid = np.arange(x_Nx2xW.shape[-1]) >= x_Nx2xW.shape[-1] - length_N[:, None, None]
  return np.where(valid, x_Nx2xW + sigma * noise, 0.0).astype(np.float32)


def rotate(x_Nx2xW, angle_N) -> np.ndarray:
  """Each row turned by its angle about the origin (padding stays zero)."""
  c, s = np.cos(angle_N)[:, None], np.sin(angle_N)[:, None]
  x, y = x_Nx2xW[:, 0], x_Nx2xW[:, 1]
  return np.stack([c * x - s * y, s * x + c * y], 1).astype(np.float32)


def minmax(x_NxCxW, length_N) -> np.ndarray:
  """Each axis of each row scaled to [0, 1] over its points (a constant axis to 0); padding zero."""
  valid = np.arange(x_NxCxW.shape[-1]) >= x_NxCxW.shape[-1] - length_N[:, None, None]
  lo = np.where(valid, x_NxCxW, np.inf).min(-1, keepdims=True)
  hi = np.where(valid, x_NxCxW, -np.inf).max(-1, keepdims=True)
  span = hi - lo
  return np.where(valid, (x_NxCxW - lo) / np.where(span > 0, span, 1.0), 0.0).astype(np.float32)
