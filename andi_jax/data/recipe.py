"""AnDi 2020 challenge-recipe data, simulated with andi-datasets' theory-model generators.

Per trajectory: model uniform over the recipe's models, α uniform over that model's grid values,
simulate at length T, normalise each axis (unit displacement std over the full T), add Gaussian
localisation noise σ·N(0, 1) with σ from the noise levels, multiply by d ~ N(0, 1), keep the first
`keep` points. A cut length uniform in min_length..max_length (clipped to keep) is drawn for ragged
held-out sets. Output depends on the recipe only: not on worker count, and a smaller `keep` stores
an exact prefix of what a larger one would.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import hashlib
import json
import multiprocessing
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from andi_jax.data.io import MIN_POINTS

MODELS: tuple[str, ...] = ("attm", "ctrw", "fbm", "lw", "sbm")
CLASSES: tuple[str, ...] = tuple(m.upper() for m in MODELS)  # Task 2 labels in andi-datasets' order
ALPHA_GRID: np.ndarray = np.arange(0.05, 2.01, 0.05)
# Trajectories per seeded chunk; part of the data's identity (changing it changes the data).
CHUNK_SIZE = 500
# Bump when the generated data for a given recipe changes, to invalidate old caches.
FORMAT_VERSION = 1

_ALLOWED = {
  "attm": slice(0, 20),  # 0.05..1.0: the generator raises for α > 1
  "ctrw": slice(0, 20),
  "fbm": slice(0, 39),  # 0.05..1.95: H = 1 is degenerate
  "lw": slice(20, 40),  # 1.05..2.0: the generator raises for α < 1
  "sbm": slice(0, 40),
}
_FIELDS = ("x", "alpha", "model", "noise", "length")


def allowed_alphas(model: str) -> np.ndarray:
  """The challenge's α grid values allowed for `model`."""
  if model not in _ALLOWED:
    raise ValueError(f"unknown model {model!r}; expected one of {MODELS}")
  return ALPHA_GRID[_ALLOWED[model]]


def _is_int(v: Any) -> bool:
  return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


@dataclass(frozen=True)
class Recipe:
  """Everything that determines a generated data set."""

  n: int
  dim: int = 1
  seed: int = 0
  T: int = 1000
  keep: int = 1000
  models: tuple[str, ...] = MODELS
  noise_levels: tuple[float, ...] = (0.1, 0.5, 1.0)
  min_length: int = 10
  max_length: int = 999

  def __post_init__(self) -> None:
    for name in ("n", "dim", "seed", "T", "keep", "min_length", "max_length"):
      v = getattr(self, name)
      if not _is_int(v):
        raise ValueError(f"Recipe.{name} must be an int, got {v!r}")
      object.__setattr__(self, name, int(v))  # plain ints keep the JSON cache key stable
    if self.n < 1:
      raise ValueError(f"Recipe.n must be >= 1, got {self.n}")
    if not 1 <= self.dim <= 3:
      raise ValueError(f"Recipe.dim must be 1, 2 or 3, got {self.dim}")
    if self.seed < 0:
      raise ValueError(f"Recipe.seed must be >= 0, got {self.seed}")
    if self.T < MIN_POINTS:
      raise ValueError(f"Recipe.T must be >= {MIN_POINTS}, got {self.T}")
    if not MIN_POINTS <= self.keep <= self.T:
      raise ValueError(f"Recipe.keep must be in {MIN_POINTS}..T={self.T}, got {self.keep}")
    if not MIN_POINTS <= self.min_length <= self.max_length:
      raise ValueError(
        f"need {MIN_POINTS} <= min_length <= max_length, got {self.min_length}, {self.max_length}"
      )
    models = tuple(self.models)
    bad = [m for m in models if m not in MODELS]
    if not models or bad or len(set(models)) != len(models):
      raise ValueError(f"Recipe.models must be distinct names from {MODELS}, got {self.models!r}")
    object.__setattr__(self, "models", models)
    levels = tuple(float(s) for s in self.noise_levels)
    if not levels or not all(np.isfinite(s) and s >= 0 for s in levels):
      raise ValueError(f"Recipe.noise_levels must be finite and >= 0, got {self.noise_levels!r}")
    object.__setattr__(self, "noise_levels", levels)

  def key(self) -> str:
    """Cache key: 16 hex digits of a SHA-1 over the fields and the data format."""
    payload = {**dataclasses.asdict(self), "format": FORMAT_VERSION, "chunk": CHUNK_SIZE}
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Dataset:
  """Trajectories x (n, dim, keep) float32 with per-trajectory labels."""

  x: np.ndarray
  alpha: np.ndarray  # (n,) float32
  model: np.ndarray  # (n,) int32, index into MODELS
  noise: np.ndarray  # (n,) float32, localisation-noise σ
  length: np.ndarray  # (n,) int32, cut length for ragged use

  def __post_init__(self) -> None:
    n = len(self.x)
    if self.x.ndim != 3 or any(getattr(self, f).shape != (n,) for f in _FIELDS[1:]):
      raise ValueError("Dataset needs x of shape (n, dim, keep) and labels of shape (n,)")

  def __len__(self) -> int:
    return len(self.x)

  def crop(self, L: int) -> np.ndarray:
    """The first L points of every trajectory, (n, dim, L)."""
    keep = self.x.shape[-1]
    if not MIN_POINTS <= L <= keep:
      raise ValueError(f"crop length must be in {MIN_POINTS}..{keep} (stored points), got {L}")
    return self.x[:, :, :L]

  def trajectories(self) -> list[np.ndarray]:
    """Ragged view: trajectory i cut to its drawn length, each (dim, length_i)."""
    return [xi[:, :li] for xi, li in zip(self.x, self.length)]

  def subset(self, idx: Any) -> Dataset:
    idx = np.asarray(idx)
    return Dataset(*(getattr(self, f)[idx] for f in _FIELDS))


def _andi() -> tuple[Any, Any, Any]:
  try:
    # Only these modules: datasets_challenge prints a DeepTrack warning at import.
    import stochastic.random
    from andi_datasets.models_theory import models_theory
    from andi_datasets.utils_trajectories import normalize
  except ImportError as e:
    raise ImportError(
      "andi-datasets is not installed (or is broken); run `sh setup.sh`, which installs "
      "andi-datasets==2.1.13 and stochastic==0.6.0 with --no-deps"
    ) from e
  return models_theory(), normalize, stochastic.random


def _chunk_seed(seed: int, k: int) -> int:
  return int(np.random.SeedSequence([seed, k]).generate_state(1)[0])


def _normalize(raw: np.ndarray) -> np.ndarray:
  """andi's per-row normalisation of a (dim, T) trajectory, made safe for constant velocity.

  andi leaves an axis unscaled when its displacement std is 0, but a constant-velocity axis (LW at
  α = 2 whose flights all share one sign: a quarter to a third of those) has a std of rounding noise and would
  be scaled up ~1e15. Such axes are left unscaled, as andi means to. Rows are axes: per-axis.
  """
  traj = _andi()[1](raw)
  disp = np.diff(raw, axis=1)
  flat = disp.std(axis=1) <= 1e-9 * np.abs(disp).max(axis=1)
  traj[flat] = raw[flat] - raw[flat, :1]
  return traj


def _simulate_chunk(recipe: Recipe, k: int, count: int) -> dict[str, np.ndarray]:
  """Chunk k of the data set: `count` trajectories from a stream seeded by (seed, k) alone."""
  theory, _, stochastic_random = _andi()
  s = _chunk_seed(recipe.seed, k)
  np.random.seed(s)  # the generators draw from numpy's global stream...
  stochastic_random.seed(s)  # ...except FBM, which uses stochastic's own generator
  rs = np.random
  # All choices first, so they do not depend on how many draws each simulation consumes.
  names = [recipe.models[i] for i in rs.randint(len(recipe.models), size=count)]
  alphas = [float(rs.choice(allowed_alphas(m))) for m in names]  # python float: FBM rejects np.float32
  sigmas = np.asarray(recipe.noise_levels)[rs.randint(len(recipe.noise_levels), size=count)]
  factors = rs.standard_normal(count)
  lengths = np.minimum(rs.randint(recipe.min_length, recipe.max_length + 1, size=count), recipe.keep)

  x = np.empty((count, recipe.dim, recipe.keep), np.float32)
  for i, (m, a) in enumerate(zip(names, alphas)):
    with np.errstate(over="ignore"):  # LW's flight times overflow to inf by design, then are clipped
      raw = np.asarray(getattr(theory, m)(T=recipe.T, alpha=a, D=recipe.dim), np.float64)
    traj = _normalize(raw.reshape(recipe.dim, recipe.T))
    # Noise over the full T (not just `keep`) so the stream, hence the data, is independent of keep.
    traj = (traj + sigmas[i] * rs.standard_normal(traj.shape)) * factors[i]
    x[i] = traj[:, : recipe.keep]
  return {
    "x": x,
    "alpha": np.asarray(alphas, np.float32),
    "model": np.asarray([MODELS.index(m) for m in names], np.int32),
    "noise": sigmas.astype(np.float32),
    "length": lengths.astype(np.int32),
  }


def worker_pool(workers: int) -> cf.ProcessPoolExecutor:
  # spawn, not fork: the parent may hold JAX's threads, which fork does not copy safely.
  return cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def _run_chunks(
  recipe: Recipe, workers: int, progress: bool, pool: cf.ProcessPoolExecutor | None
) -> list[dict[str, np.ndarray]]:
  counts = [min(CHUNK_SIZE, recipe.n - start) for start in range(0, recipe.n, CHUNK_SIZE)]
  bar = tqdm(
    total=len(counts), desc=f"simulating {recipe.n} trajectories", unit="chunk", disable=not progress
  )
  with bar:
    if pool is None and min(workers, len(counts)) == 1:
      out = []
      for k, c in enumerate(counts):
        out.append(_simulate_chunk(recipe, k, c))
        bar.update()
      return out
    results: list[dict[str, np.ndarray] | None] = [None] * len(counts)
    # a pool of its own is shut down on leaving; a given one stays up for its owner
    with worker_pool(min(workers, len(counts))) if pool is None else contextlib.nullcontext(pool) as pool:
      futures = {pool.submit(_simulate_chunk, recipe, k, c): k for k, c in enumerate(counts)}
      for f in cf.as_completed(futures):
        results[futures[f]] = f.result()
        bar.update()
    return results  # type: ignore[return-value]


def generate(
  recipe: Recipe,
  *,
  workers: int | None = None,
  cache_dir: str | os.PathLike | None = None,
  progress: bool = True,
  pool: cf.ProcessPoolExecutor | None = None,
) -> Dataset:
  """Generate (or load from `cache_dir`) the data set described by `recipe`.

  pool: started worker processes (worker_pool) to reuse; by default each call starts and ends its own.
  """
  path = Path(cache_dir) / f"recipe-{recipe.key()}.npz" if cache_dir is not None else None
  if path is not None and path.exists():
    with np.load(path, allow_pickle=False) as f:
      return Dataset(*(f[k] for k in _FIELDS))
  workers = (os.cpu_count() or 1) if workers is None else workers
  if workers < 1:
    raise ValueError(f"workers must be >= 1, got {workers}")
  _andi()  # fail early, in the parent, if andi-datasets is missing
  chunks = _run_chunks(recipe, workers, progress, pool)
  ds = Dataset(*(np.concatenate([c[k] for c in chunks]) for k in _FIELDS))
  if path is not None:
    _save_atomic(path, ds)
  return ds


def _save_atomic(path: Path, ds: Dataset) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  # Temp file in the same directory so os.replace is atomic: no reader ever sees a partial cache.
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem + ".", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      np.savez(f, **{k: getattr(ds, k) for k in _FIELDS})
    os.replace(tmp, path)
  except BaseException:
    os.unlink(tmp)
    raise
