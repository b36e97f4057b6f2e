"""The five AnDi theory models and the challenge recipe, generated on device in JAX.

Sampler (what a jitted training step calls; `recipe` and `batch` are static, `key` a step key):

  sample_recipe(key: jax.Array, batch: int, recipe: DeviceRecipe) -> Batch
    DeviceRecipe(length: int | tuple[int, int], dim: int = 1, models: tuple[str, ...] = MODELS,
                 noise_levels: tuple[float, ...] = (0.1, 0.5, 1.0), T: int = 1000)
    Batch.x       (batch, W) float32 for dim 1, (batch, dim, W) otherwise: per axis standardised over
                  the row's real points (preprocess.standardize), left-padded with zeros to W
    Batch.length  (batch,) int32   real points per row: `length` itself, or uniform in [lo, hi]
    Batch.alpha   (batch,) float32 a value of the challenge grid allowed for the row's model
    Batch.model   (batch,) int32   index into MODELS (ATTM, CTRW, FBM, LW, SBM)
    Batch.noise   (batch,) float32 localisation-noise sigma
  W = length, or hi in bucket mode. `jax.jit(sample_recipe, static_argnums=(1, 2))` compiles it alone.

The recipe is `andi_jax.data.recipe`'s: model uniform over `models`, alpha uniform over that model's grid
values, simulate T points, normalise each axis (unit displacement std over all T), add sigma·N(0, 1) with
sigma uniform over `noise_levels`, multiply by d ~ N(0, 1), keep a prefix. Each row has the recipe's law.
One difference in the joint law: to keep shapes static, each model simulates ceil(batch / #models) rows
and a random permutation picks the batch from that pool, so a batch's model counts are hypergeometric
(nearly balanced) rather than multinomial.

Models. Each is a deterministic core `<model>_core(alpha, T, noise) -> (dim, T - 1)` increments, fed the
arrays that `<model>_noise(key, T, dim, dtype)` draws. The arrays hold the draws andi-datasets 2.1.13 makes
(same distributions, same roles, padded to static shapes), so a core fed the draws andi made for a seed
(`andi_replay`) reproduces andi's trajectory; see /work/shared/specs/ANDI_MODELS.md for each model's law.
`simulate` returns positions (dim, T) from x_0 = 0, i.e. `models_theory().<model>(T, alpha, D=dim)`
reshaped to (dim, T). Cores work in the noise arrays' dtype (float32, or float64 under jax x64).
Float32 choices: ATTM keeps D in logs (D reaches 1e-67; sqrt(2D) >= 5e-34 is representable), the
normalisation divides by the largest increment before taking the std (an ATTM std of 1e-34 squares
to 0 in float32), LW's increments are exactly +-v (a constant-velocity axis is detected exactly), and
FBM's circulant eigenvalues come from a float64 host table over the grid in the recipe (float32 FFTs
of the autocovariance lose ~1e-4 of sqrt(eigenvalue) near H = 1).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from andi_jax.data.recipe import MODELS, allowed_alphas

# --- helpers ----------------------------------------------------------------------------------


def _in_halves(draw, key, rows: int):
  """draw(key, n) -> arrays of n leading rows, for `rows` rows drawn as the two trips of a loop, each
  from its own key. A loop's outputs are written to memory, so XLA cannot fuse threefry's unrolled rounds
  (andi_jax/runtime.py) into their consumers: fused into a gather, they ran element by element and the
  draw got slower than with jax's rolled CPU lowering."""
  half = -(-rows // 2)
  out = jax.lax.map(lambda k: draw(k, half), jax.random.split(key, 2))
  return jax.tree.map(lambda a: a.reshape(2 * half, *a.shape[2:])[:rows], out)


def cumsum(x, block: int = 32):
  """Cumulative sum over the last axis as triangular matmuls within and across blocks of about `block`.

  XLA's CPU cumsum (an associative scan of strided slices) takes 4x as long. The block divides the length
  where it can: a padded input fuses the simulation that feeds it into a slow pad loop. Integer arrays go
  through float32, exact while every partial sum stays below 2^24 (here: at most ~T^2 = 1e6).
  """
  dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32
  n = x.shape[-1]
  block = min(range(block // 2, 2 * block), key=lambda b: (n % b != 0, abs(b - block)))
  nb = -(-n // block)
  y = jnp.pad(x.astype(dtype), [(0, 0)] * (x.ndim - 1) + [(0, nb * block - n)]).reshape(
    *x.shape[:-1], nb, block
  )
  within = jnp.einsum("...kb,bc->...kc", y, jnp.triu(jnp.ones((block, block), dtype)), precision="highest")
  before = jnp.einsum(
    "...k,kj->...j", within[..., -1], jnp.triu(jnp.ones((nb, nb), dtype), 1), precision="highest"
  )
  return (within + before[..., None]).reshape(*x.shape[:-1], nb * block)[..., :n].astype(x.dtype)


def power(x, exponent):
  """x ** exponent for x > 0 as exp(exponent log x): XLA's CPU pow is a scalar loop, 4x slower."""
  return jnp.exp(exponent * jnp.log(x))


def positions(dx):
  """Increments (..., T - 1) -> positions (..., T) starting at 0."""
  return jnp.concatenate([jnp.zeros_like(dx[..., :1]), cumsum(dx)], axis=-1)


def _on_sphere(radius, gauss_3xN):
  """andi's sample_sphere: radius times a uniform unit vector (normalised Gaussian), (3, N)."""
  return gauss_3xN / jnp.linalg.norm(gauss_3xN, axis=0) * radius


def _draw(sampler, key, shape, dtype, **parts) -> dict:
  """One random call cut into named arrays, each shape + part: one call compiles much faster than several."""
  sizes = [math.prod(part) for part in parts.values()]
  flat = sampler(key, (*shape, sum(sizes)), dtype)
  offsets = np.cumsum([0] + sizes)
  return {
    name: flat[..., a:b].reshape(*shape, *part)
    for (name, part), a, b in zip(parts.items(), offsets[:-1], offsets[1:])
  }


def _owner(ends, size):
  """owner[i] = #{k : ends[k] <= i} for i < size, with ends ascending: which interval holds step i + 1."""
  return cumsum(jnp.zeros(size, jnp.int32).at[ends].add(1, mode="drop"))


# --- CTRW -------------------------------------------------------------------------------------


def ctrw_noise(key, T: int, dim: int = 1, dtype=jnp.float32, shape=()) -> dict:
  k_u, k_n = jax.random.split(key)
  v = 1 - jax.random.uniform(k_u, (*shape, T), dtype)  # U(0, 1], as andi's 1 - rand(T)
  if dim < 3:
    return {"v": v, **_draw(jax.random.normal, k_n, shape, dtype, jump=(dim, T))}
  # 3D: andi prepends time 0, so one more jump; N(0, 1) lengths along uniform directions
  return {"v": v, **_draw(jax.random.normal, k_n, shape, dtype, jump=(T + 1,), direction=(3, T + 1))}


def ctrw_core(alpha, T: int, noise: dict):
  """Pareto(alpha) waiting times (min 1); x_j = sum of the jumps made at times t < j + 1.

  Waits of at least 1 put at most one jump in each unit of time, so increment j is the jump made at time
  j + 1, or 0: the jumps are added at their times (a float32 floor that merges two times sums them, as
  counting would). Faster than positions gathered at the jump counts and differenced.
  """
  wait = jnp.minimum(power(noise["v"], -1 / alpha), T + 1)  # past T + 1 a wait changes nothing
  when = jnp.floor(cumsum(wait)).astype(jnp.int32)[: T - 1]  # jump k at time >= k + 1: later ones fall out
  if "direction" in noise:
    jump, drop = _on_sphere(noise["jump"], noise["direction"]), 2  # andi's 3D time 0 adds one to drop
  else:
    jump, drop = noise["jump"], 1  # andi subtracts the first jump's position: it never shows
  return (
    jnp.zeros((jump.shape[0], T - 1), jump.dtype)
    .at[:, when - 1]
    .add(jump[:, drop : drop + T - 1], mode="drop")
  )


# --- LW ---------------------------------------------------------------------------------------


def lw_noise(key, T: int, dim: int = 1, dtype=jnp.float32, shape=()) -> dict:
  k_u, k_n = jax.random.split(key)
  per_flight = {"sign": (T,)} | ({"angle": (T,)} if dim == 2 else {})
  noise = _draw(
    jax.random.uniform, k_u, shape, dtype, u_sigma=(), v=(T,), u_speed=(), **(per_flight if dim < 3 else {})
  )
  noise["v"] = 1 - noise["v"]  # U(0, 1], as andi's 1 - rand(T)
  if dim == 3:
    return noise | _draw(jax.random.normal, k_n, shape, dtype, direction=(3, T))
  noise["sign"] = (noise["sign"] < 0.5).astype(jnp.int32)  # andi's randint(0, 2)
  if dim == 2:
    noise["angle"] = 2 * math.pi * noise["angle"]
  return noise


def lw_core(alpha, T: int, noise: dict):
  """Flights of Pareto(sigma) duration (floored; T + 1 past T) at one speed v ~ U(0, 10)."""
  sigma = jnp.where(alpha == 2, noise["u_sigma"], 3 - alpha)  # andi's special case at exactly 2
  tau = power(noise["v"], -1 / sigma)
  ends = cumsum(jnp.where(tau > T, T + 1, jnp.floor(tau)).astype(jnp.int32))
  speed = 10 * noise["u_speed"]
  # steps 2..T (andi subtracts the first step) ride flights #{k : ends_k < step}
  if "direction" in noise or "angle" in noise:
    if "direction" in noise:
      velocity = _on_sphere(speed, noise["direction"])
    else:  # 2D
      velocity = speed * (2 * noise["sign"] - 1).astype(speed.dtype)
      velocity = velocity * jnp.stack([jnp.cos(noise["angle"]), jnp.sin(noise["angle"])])
    return velocity[:, _owner(ends, T)[1:]]
  # 1D: the sign changes scattered at the flights' ends and summed (exact: integers), instead of a gather
  # of each step's flight, a scalar loop on CPU
  sign = noise["sign"]
  flips = jnp.zeros(T, jnp.int32).at[ends[:-1]].add(sign[1:] - sign[:-1], mode="drop")
  return (speed * (2 * (sign[0] + cumsum(flips)[1:]) - 1).astype(speed.dtype))[None]


# --- ATTM -------------------------------------------------------------------------------------


def attm_noise(key, T: int, dim: int = 1, dtype=jnp.float32, shape=()) -> dict:
  k_u, k_n = jax.random.split(key)
  noise = _draw(jax.random.uniform, k_u, shape, dtype, u_sigma=(), v=(T - 1,))  # at most T - 1 segments
  noise["v"] = 0.9 - 0.89 * noise["v"]  # andi's 1 - U[0.1, 0.99)
  if dim < 3:
    return noise | _draw(jax.random.normal, k_n, shape, dtype, step=(dim, T - 1))
  return noise | _draw(jax.random.normal, k_n, shape, dtype, step=(T - 1,), direction=(3, T - 1))


def attm_core(alpha, T: int, noise: dict):
  """Brownian segments: D = V^(1/sigma), duration floor(min(V^(-1/alpha), T)).

  andi's rejection loop for sigma is U(0.03, min(3.3, alpha / (1 - alpha))) in closed form (it hangs for
  alpha < 0.0291, where this gives sigma = alpha / (1 - alpha)).
  """
  hi = jnp.minimum(3.3, alpha / (1 - alpha))
  lo = jnp.minimum(0.03, hi)
  sigma = lo + noise["u_sigma"] * (hi - lo)
  v = noise["v"]
  log_v = jnp.log(v)
  log_d = log_v / sigma  # D itself underflows float32
  ends = cumsum(
    jnp.floor(jnp.minimum(jnp.exp(-log_v / alpha), T)).astype(jnp.int32)
  )  # D^-gamma = V^(-1/alpha)
  segment = _owner(ends, T - 1)
  amplitude = jnp.exp(0.5 * (math.log(2) + log_d))[segment]  # sqrt(2 D) of each step's segment
  if "direction" not in noise:
    return amplitude * noise["step"]
  # andi's 3D ATTM adds each step to the segment's start point instead of accumulating them (MT:361):
  # within a segment the particle jitters about one point. Replicated: increment d_i - d_(i-1) there.
  d = _on_sphere(amplitude * noise["step"], noise["direction"])
  same = jnp.concatenate([jnp.zeros(1, bool), segment[1:] == segment[:-1]])
  return d - jnp.where(same, jnp.pad(d, ((0, 0), (1, 0)))[:, :-1], 0)


# --- SBM --------------------------------------------------------------------------------------


def sbm_noise(key, T: int, dim: int = 1, dtype=jnp.float32, shape=()) -> dict:
  return {"step": jax.random.normal(key, (*shape, dim, T), dtype)}


def sbm_core(alpha, T: int, noise: dict):
  """Independent increments N(0, k^alpha - (k-1)^alpha), k = 2..T: andi drops the first."""
  k = jnp.arange(2, T + 1, dtype=noise["step"].dtype)
  variance = power(k, alpha) * -jnp.expm1(alpha * jnp.log1p(-1 / k))  # no cancellation at large k
  return jnp.sqrt(variance) * noise["step"][:, 1:]


# --- FBM --------------------------------------------------------------------------------------


def _fbm_m(T: int) -> int:
  """stochastic's Davies-Harte size for n = T - 1 increments: circulant of 2 (m - 1)."""
  return 2 ** (T - 3).bit_length() + 1


def _sqrt_eigenvalues(xp, hurst, m: int):
  """sqrt of the circulant eigenvalues over 2 (m - 1) (stochastic's normalisation), numpy or jax.numpy."""
  k = xp.arange(1, m, dtype=hurst.dtype)
  h2 = 2 * hurst
  # autocovariance 1/2 (|k+1|^2H - 2 |k|^2H + |k-1|^2H), without the naive form's cancellation
  gamma = 0.5 * k**h2 * (xp.expm1(h2 * xp.log1p(1 / k)) + xp.expm1(h2 * xp.log1p(-1 / k)))
  eigenvalues = xp.fft.irfft(xp.concatenate([xp.ones(1, hurst.dtype), gamma]))[:m]
  return xp.sqrt(xp.maximum(eigenvalues, 0))  # rounding can make the smallest ones negative


def fbm_sqrt_eigenvalues(alpha, T: int):
  """In-graph sqrt eigenvalues for a traced alpha, (m,); see `fbm_eigenvalue_table` for float32 use."""
  return _sqrt_eigenvalues(jnp, jnp.asarray(alpha) / 2, _fbm_m(T))


def fbm_eigenvalue_table(alphas, T: int) -> np.ndarray:
  """Float64 host table of sqrt eigenvalues, (len(alphas), m): exact to float32 rounding near H = 1."""
  with np.errstate(divide="ignore"):  # log1p(-1) = -inf at k = 1 is meant: expm1 takes it to -1
    return np.stack([_sqrt_eigenvalues(np, np.float64(a) / 2, _fbm_m(T)) for a in alphas])


def fbm_noise(key, T: int, dim: int = 1, dtype=jnp.float32, shape=()) -> dict:
  return {"z": jax.random.normal(key, (*shape, dim, 2 * _fbm_m(T)), dtype)}


def fbm_core(alpha, T: int, noise: dict, sqrt_eigenvalues=None):
  """Davies-Harte fractional Gaussian noise, H = alpha / 2, as B_H(j / (T - 1)) on [0, 1] (stochastic's
  scale)."""
  z = noise["z"]
  n, m = T - 1, _fbm_m(T)
  if sqrt_eigenvalues is None:
    sqrt_eigenvalues = fbm_sqrt_eigenvalues(alpha, T)
  hurst = alpha / 2
  scale = n**-hurst
  # end bins real and scaled by sqrt 2 (irfft drops their imaginary parts): a constant mask, not two
  # .at[].set on w, which took 35 % more time
  ends = jnp.ones(m, z.dtype).at[jnp.array([0, m - 1])].set(math.sqrt(2))
  w = jax.lax.complex(z[:, 0::2] * ends, z[:, 1::2]) * (scale * math.sqrt(2) * (m - 1))
  davies_harte = jnp.fft.irfft(sqrt_eigenvalues.astype(z.dtype) * w, axis=-1)[:, :n]
  # stochastic's H = 1/2 shortcut: iid normals from the same stream
  return jnp.where(hurst == 0.5, z[:, :n] * scale, davies_harte)


# --- one trajectory ---------------------------------------------------------------------------

NOISE = {"attm": attm_noise, "ctrw": ctrw_noise, "fbm": fbm_noise, "lw": lw_noise, "sbm": sbm_noise}
CORE = {"attm": attm_core, "ctrw": ctrw_core, "fbm": fbm_core, "lw": lw_core, "sbm": sbm_core}


def increments(key, model: str, alpha, T: int, dim: int = 1, dtype=jnp.float32):
  """(dim, T - 1) increments of one `model` trajectory; vmappable over key and alpha."""
  return CORE[model](jnp.asarray(alpha, dtype), T, NOISE[model](key, T, dim, dtype))


def simulate(key, model: str, alpha, T: int, dim: int = 1, dtype=jnp.float32):
  """(dim, T) positions from 0, as andi's models_theory().<model>(T, alpha, D=dim).reshape(dim, T)."""
  return positions(increments(key, model, alpha, T, dim, dtype))


# --- the recipe -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DeviceRecipe:
  length: int | tuple[int, int]  # fixed length, or a bucket (lo, hi): uniform in lo..hi, padded to hi
  dim: int = 1
  models: tuple[str, ...] = MODELS
  noise_levels: tuple[float, ...] = (0.1, 0.5, 1.0)
  T: int = 1000  # simulated points; the normalisation sees all of them, as in the recipe

  def __post_init__(self):
    lo, hi = (self.length, self.length) if isinstance(self.length, int) else tuple(self.length)
    if not 2 <= lo <= hi <= self.T:
      raise ValueError(f"need 2 <= length (lo <= hi) <= T={self.T}, got {self.length}")
    if self.dim not in (1, 2, 3):
      raise ValueError(f"dim must be 1, 2 or 3, got {self.dim}")
    if not self.models or len(set(self.models)) != len(self.models) or not set(self.models) <= set(MODELS):
      raise ValueError(f"models must be distinct names from {MODELS}, got {self.models!r}")
    if not self.noise_levels or min(self.noise_levels) < 0:
      raise ValueError(f"noise_levels must be >= 0, got {self.noise_levels!r}")
    object.__setattr__(self, "length", self.length if isinstance(self.length, int) else (lo, hi))
    object.__setattr__(self, "models", tuple(self.models))
    object.__setattr__(self, "noise_levels", tuple(float(s) for s in self.noise_levels))

  @property
  def width(self) -> int:
    return self.length if isinstance(self.length, int) else self.length[1]


class Batch(NamedTuple):
  x: jax.Array
  length: jax.Array
  alpha: jax.Array
  model: jax.Array
  noise: jax.Array


def normalize(dx):
  """andi's normalize on increments (..., T - 1): unit std per axis, as recipe._normalize.

  An axis whose increments are all equal (an all-zero CTRW, a single-flight LW) is left unscaled.
  """
  peak = jnp.max(jnp.abs(dx), axis=-1, keepdims=True)
  y = dx / jnp.where(peak > 0, peak, 1)  # float32: an ATTM std of 1e-34 would square to 0
  flat = jnp.all(dx == dx[..., :1], axis=-1, keepdims=True)
  return jnp.where(flat, dx, y / jnp.std(y, axis=-1, keepdims=True))


def crop_standardize(x, length, width: int):
  """First `length` points of each row (..., T), standardised over them and left-padded to `width`."""
  start = width - length[:, None, None]
  col = jnp.arange(width)
  valid = col >= start
  y = jnp.take_along_axis(x, jnp.broadcast_to(jnp.maximum(col - start, 0), x.shape[:-1] + (width,)), axis=-1)
  n = length[:, None, None].astype(x.dtype)
  mean = jnp.sum(jnp.where(valid, y, 0), axis=-1, keepdims=True) / n
  dev = jnp.where(valid, y - mean, 0)
  std = jnp.sqrt(jnp.sum(dev * dev, axis=-1, keepdims=True) / n)
  return dev / jnp.where(std > 0, std, 1)  # a constant row stays at zero, as preprocess.standardize


def grid_increments(key, model: str, index, T: int, dim: int = 1):
  """Raw float32 increments (rows, dim, T - 1) of `model` at the grid alphas allowed_alphas(model)[index],
  and those alphas (rows,): the recipe's generator. FBM uses the float64 eigenvalue table."""
  grid = allowed_alphas(model)
  alpha = jnp.asarray(grid, jnp.float32)[index]
  noise = _in_halves(lambda k, n: NOISE[model](k, T, dim, shape=(n,)), key, len(index))
  if model == "fbm":
    table = jnp.asarray(fbm_eigenvalue_table(grid, T), jnp.float32)[index]
    return jax.vmap(lambda a, z, e: fbm_core(a, T, z, e))(alpha, noise, table), alpha
  return jax.vmap(lambda a, z: CORE[model](a, T, z))(alpha, noise), alpha


def sample_recipe(key, batch: int, recipe: DeviceRecipe) -> Batch:
  """A batch of challenge-recipe trajectories, preprocessed as training expects (module docstring)."""
  k_models, k_choice, k_pick, k_normal = jax.random.split(key, 4)
  n_models, W, dim = len(recipe.models), recipe.width, recipe.dim
  rows = -(-batch // n_models)
  lo, hi = (W, W) if isinstance(recipe.length, int) else recipe.length
  # every discrete choice in one call: alpha grid index per pool row, then noise level and length per row
  n_alpha = [len(allowed_alphas(m)) for m in recipe.models]
  low = np.concatenate([np.zeros(n_models * rows + batch, np.int32), np.full(batch, lo, np.int32)])
  high = np.concatenate(
    [np.repeat(n_alpha, rows), np.full(batch, len(recipe.noise_levels)), np.full(batch, hi + 1)]
  )
  choice = jax.random.randint(k_choice, low.shape, low, high)
  index, level, length = jnp.split(choice, [n_models * rows, n_models * rows + batch])
  pool = [
    grid_increments(k, name, i, recipe.T, dim)
    for k, name, i in zip(jax.random.split(k_models, n_models), recipe.models, index.reshape(n_models, rows))
  ]
  pick = jax.random.permutation(k_pick, n_models * rows)[:batch]
  # each pool normalised over all T, then only the kept prefix is gathered into the batch
  dx = jnp.concatenate([normalize(d)[..., : W - 1] for d, _ in pool])[pick]
  alpha = jnp.concatenate([a for _, a in pool])[pick]
  model = jnp.repeat(jnp.asarray([MODELS.index(m) for m in recipe.models], jnp.int32), rows)[pick]
  x = positions(dx)
  sigma = jnp.asarray(recipe.noise_levels, jnp.float32)[level]
  normal = _in_halves(lambda k, n: jax.random.normal(k, (n, dim * W + 1)), k_normal, batch)
  x = (x + sigma[:, None, None] * normal[:, 1:].reshape(batch, dim, W)) * normal[:, :1, None]
  x = crop_standardize(x, length, W)
  return Batch(x=x[:, 0] if dim == 1 else x, length=length, alpha=alpha, model=model, noise=sigma)


# --- andi-datasets' draws, for replay ---------------------------------------------------------


@contextlib.contextmanager
def _recorded_draws():
  """Logs every draw andi makes (numpy's global stream and stochastic's generator), unchanged."""
  import stochastic.random

  numpy_log, fgn_log = [], []
  originals = {name: getattr(np.random, name) for name in ("rand", "randn", "uniform", "randint")}

  def recorder(name, draw):
    def wrapped(*args, **kwargs):
      out = draw(*args, **kwargs)
      numpy_log.append((name, kwargs, np.asarray(out, np.float64)))
      return out

    return wrapped

  class Generator:  # stochastic's FGN calls generator.normal(scale=..., size=...)
    def __init__(self, generator):
      self.generator = generator

    def normal(self, loc=0.0, scale=1.0, size=None):
      out = self.generator.normal(loc, scale, size)
      fgn_log.append(out / scale)
      return out

  generator = stochastic.random.generator
  for name, draw in originals.items():
    setattr(np.random, name, recorder(name, draw))
  stochastic.random.generator = Generator(generator)
  try:
    yield numpy_log, fgn_log
  finally:
    for name, draw in originals.items():
      setattr(np.random, name, draw)
    stochastic.random.generator = generator


def _pad(a, size: int, value: float = 0.0) -> np.ndarray:
  """Unused tail of a static-shape draw: andi stops drawing once the trajectory is long enough."""
  return np.concatenate([a, np.full(a.shape[:-1] + (size - a.shape[-1],), value)], axis=-1)


def _arrange(model: str, alpha: float, T: int, dim: int, numpy_log, fgn_log) -> dict:
  """andi's draws, in call order, as `<model>_core`'s noise arrays (float64; int signs).

  andi's uniforms u enter as 1 - u, computed here in float64 as andi does, so that a float32 core
  sees V = 1 - u with full relative precision.
  """
  calls = numpy_log
  if model == "sbm":
    from scipy.special import erfcinv

    return {"step": np.stack([np.sqrt(2) * erfcinv(2 - 2 * out) for _, _, out in calls])}
  if model == "fbm":
    return {"z": np.stack([_pad(z, 2 * _fbm_m(T)) for z in fgn_log])}
  if model == "ctrw":
    v, normals = 1 - calls[0][2], [out for _, _, out in calls[1:]]
    if dim == 3:
      # unit padding: a zero direction's 0/0 would reach every position through the blocked cumsum
      return {"v": v, "jump": _pad(normals[0], T + 1), "direction": _pad(normals[1], T + 1, 1.0)}
    return {"v": v, "jump": np.stack([_pad(j, T) for j in normals])}
  if model == "lw":
    rands = [out for name, _, out in calls if name == "rand"]
    u_sigma = rands[0] if alpha == 2 else np.float64(0.5)  # unused below 2
    noise = {"u_sigma": u_sigma, "v": 1 - rands[-2], "u_speed": rands[-1]}
    flights = calls[len(rands) :]
    if dim == 3:
      return noise | {"direction": _pad(np.concatenate([out for _, _, out in flights], axis=1), T)}
    noise["sign"] = _pad(np.array([out for name, _, out in flights if name == "randint"]), T).astype(np.int32)
    if dim == 2:
      noise["angle"] = _pad(np.array([out for name, _, out in flights if name == "uniform"]), T)
    return noise
  # attm: sigma by rejection (its last draw is the accepted one), then per segment: u, steps
  sigma = 3 * [out for _, kw, out in calls if kw.get("low") == 1e-2][-1]
  hi = 3.3 if alpha == 1 else min(3.3, alpha / (1 - alpha))
  u = [out for _, kw, out in calls if kw.get("low") == 0.1]
  normals = [out for name, _, out in calls if name == "randn"]
  noise = {"u_sigma": (sigma - 0.03) / (hi - 0.03), "v": _pad(1 - np.array(u), T - 1, 0.5)}
  if dim < 3:
    return noise | {"step": np.stack([np.concatenate(normals[a::dim])[: T - 1] for a in range(dim)])}
  return noise | {
    "step": np.concatenate(normals[0::2])[: T - 1],
    "direction": np.concatenate(normals[1::2], axis=1)[:, : T - 1],
  }


def andi_replay(model: str, alpha: float, T: int, dim: int = 1, seed: int = 0) -> tuple[dict, np.ndarray]:
  """andi-datasets' trajectory (dim, T) for `seed`, and the draws it made as `<model>_core`'s noise."""
  from andi_jax.data.recipe import _andi

  theory, _, stochastic_random = _andi()
  np.random.seed(seed)
  stochastic_random.seed(seed)
  with _recorded_draws() as (numpy_log, fgn_log), np.errstate(over="ignore", divide="ignore"):
    x = np.asarray(getattr(theory, model)(T=T, alpha=float(alpha), D=dim), np.float64).reshape(dim, T)
  return _arrange(model, alpha, T, dim, numpy_log, fgn_log), x
