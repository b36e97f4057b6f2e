"""Three coupled stochastic Stuart-Landau oscillators (GokuNets.jl `Stoch_Hopf`) and the GOKU-UI data set.

State z = (x1..x3, y1..y3); parameters p in [0, 1]^15 = (a (3), omega (3), C (9, column-major)).
The drift is multiplied by 20, the additive noise (0.02 on every coordinate) is not. Because the
noise is additive, Ito and Stratonovich readings agree and a Stratonovich solver (Heun) is consistent.

Observations are a fixed random linear map of the latent state, x_t = z_t W (W ~ U(-1, 1)^{6 x 784}),
with no observation noise. The data set therefore stores latent paths only and projects batches on
the fly: exact, and 130 times smaller than the 784-dimensional arrays.
"""

import dataclasses
import functools

import diffrax
import jax
import jax.numpy as jnp
import lineax
import numpy as np

N_OSC = 3
STATE = 2 * N_OSC
N_PARAMS = 2 * N_OSC + N_OSC * N_OSC
COUPLING = 0.1  # `G` in the Julia code
SPEED = 20.0  # the drift's time scale


def data_scale(p):
  """(a, omega, C) of the data generator (datasets_generation.jl): narrow ranges."""
  return 0.4 * p[:3] - 0.2, jnp.pi * (0.06 * p[3:6] + 0.08), 0.2 * p[6:].reshape(N_OSC, N_OSC).T


def model_scale(p):
  """(a, omega, C) inside the GOKU decoder: wide ranges for a and omega, the data's range for C."""
  return 2.0 * p[:3] - 1.0, p[3:6], 0.2 * p[6:].reshape(N_OSC, N_OSC).T


def drift(t, z, args):
  """dz/dt. args = (a, omega, C) with C[i, j] the coupling of oscillator i into j."""
  del t
  a, omega, c = args
  x, y = z[:N_OSC], z[N_OSC:]
  growth = a - x * x - y * y
  # sum_i C[i, j] (x_i - x_j): the diagonal of C cancels
  cx = c.T @ x - c.sum(0) * x
  cy = c.T @ y - c.sum(0) * y
  return SPEED * jnp.concatenate(
    [growth * x - omega * y + COUPLING * cx, growth * y + omega * x + COUPLING * cy]
  )


@dataclasses.dataclass(frozen=True)
class SDEConfig:
  """How the latent SDE is integrated; the defaults are the measured choice (benchmarks/goku_sde.py).

  solver "heun" with brownian "grid": a fixed-step stochastic Heun scheme (strong order 1 for additive
  noise) driven by Brownian increments pre-sampled on the step grid and read through a
  LinearInterpolation, which, unlike UnsafeBrownianPath, can be differentiated through.
  brownian "tree" uses diffrax's VirtualBrownianTree (needed for "shark", which reads Levy areas);
  "unsafe" uses UnsafeBrownianPath (forward solves only).
  """

  dt: float = 0.05  # observation spacing
  dt0: float = 0.0125  # integration step: 4 steps per observation
  noise: float = 0.02
  solver: str = "heun"  # "heun", "euler", "shark", "sra1"
  brownian: str = "grid"  # "grid", "tree", "unsafe"

  def __post_init__(self):
    if self.solver not in ("heun", "euler", "shark", "sra1"):
      raise ValueError(f"unknown solver {self.solver!r}")
    if self.brownian not in ("grid", "tree", "unsafe"):
      raise ValueError(f"unknown brownian path {self.brownian!r}")
    if self.solver in ("shark", "sra1") and self.brownian == "grid":
      raise ValueError(f"{self.solver} needs space-time Levy areas: use brownian 'tree' or 'unsafe'")
    ratio = self.dt / self.dt0
    if abs(ratio - round(ratio)) > 1e-6:
      raise ValueError(f"dt0 {self.dt0} must divide the observation spacing {self.dt}")

  @property
  def substeps(self) -> int:
    return round(self.dt / self.dt0)


_SOLVERS = {"heun": diffrax.Heun, "euler": diffrax.Euler, "shark": diffrax.ShARK, "sra1": diffrax.SRA1}


def brownian_path(key, steps: int, cfg: SDEConfig):
  """A Brownian motion on [0, steps * dt0] in the form cfg.brownian asks for."""
  t1 = steps * cfg.dt0
  if cfg.brownian == "grid":
    dw = jnp.sqrt(cfg.dt0) * jax.random.normal(key, (steps, STATE))
    w = jnp.concatenate([jnp.zeros((1, STATE)), jnp.cumsum(dw, 0)])
    return diffrax.LinearInterpolation(ts=jnp.linspace(0.0, t1, steps + 1), ys=w)
  levy = diffrax.SpaceTimeLevyArea if cfg.solver in ("shark", "sra1") else diffrax.BrownianIncrement
  if cfg.brownian == "tree":
    return diffrax.VirtualBrownianTree(0.0, t1, tol=cfg.dt0 / 2, shape=(STATE,), key=key, levy_area=levy)
  return diffrax.UnsafeBrownianPath(shape=(STATE,), key=key, levy_area=levy)


def solve(z0, params, key, n_points: int, cfg: SDEConfig, path=None):
  """z at t = 0, dt, ..., (n_points - 1) dt: (n_points, 6). params = (a, omega, C).

  `path` overrides the Brownian motion drawn from `key` (to compare solvers on one path).
  """
  steps = (n_points - 1) * cfg.substeps
  if path is None:
    path = brownian_path(key, steps, cfg)
  noise = lineax.DiagonalLinearOperator(jnp.full((STATE,), cfg.noise, z0.dtype))
  terms = diffrax.MultiTerm(diffrax.ODETerm(drift), diffrax.ControlTerm(lambda t, z, args: noise, path))
  ts = jnp.linspace(0.0, steps * cfg.dt0, n_points)  # the same float end point as the Brownian path
  # The step count is known: store every step for the backward pass instead of recomputing.
  adjoint = (
    diffrax.ForwardMode()
    if cfg.brownian == "unsafe"
    else diffrax.RecursiveCheckpointAdjoint(checkpoints=steps + 2)
  )
  sol = diffrax.diffeqsolve(
    terms,
    _SOLVERS[cfg.solver](),
    0.0,
    ts[-1],
    cfg.dt0,
    z0,
    args=params,
    saveat=diffrax.SaveAt(ts=ts),
    adjoint=adjoint,
    max_steps=steps + 2,
    throw=False,
  )
  return sol.ys


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """The GOKU-UI synthetic set (default_data_gen_args.jl, datasets_generation.jl), sized by counts."""

  n_train: int = 5800
  n_val: int = 200
  n_test: int = 1000
  train_points: int = 700  # t in [0, 34.95]
  test_points: int = 166  # the Julia test set has 300; evaluation reads only the first 66 after the crop
  transient: int = 100  # leading points dropped
  obs_dim: int = 784
  sde: SDEConfig = SDEConfig(dt0=0.005, solver="shark", brownian="unsafe")  # forward only: accurate
  test_shares_params: bool = False  # True reproduces the Julia quirk: test i has training i's (a, omega, C)
  seed: int = 0


@dataclasses.dataclass
class Dataset:
  z_train: np.ndarray  # (n_train, T, 6) latent paths, transient removed
  z_val: np.ndarray  # (n_val, T, 6)
  z_test: np.ndarray  # (n_test, test_points - transient, 6)
  w: np.ndarray  # (6, obs_dim) observation map: x = z @ w
  p_train: np.ndarray  # (n_train, 15) generating parameters in [0, 1]
  p_val: np.ndarray
  p_test: np.ndarray


# One compilation per (chunk shape, n_points, sde): the splits share it where their chunks agree.
@functools.partial(jax.jit, static_argnums=(3, 4))
def _simulate_chunk(z0, p, keys, n_points: int, sde: SDEConfig):
  return jax.vmap(lambda z, q, k: solve(z, data_scale(q), k, n_points, sde))(z0, p, keys)


def _simulate(key, p, n_points: int, cfg: DataConfig, chunk: int = 1000):
  k_z0, k_noise = jax.random.split(key)
  z0 = jax.random.uniform(k_z0, (len(p), STATE), minval=0.3, maxval=0.4)
  keys = jax.random.split(k_noise, len(p))
  out = [
    np.asarray(_simulate_chunk(z0[i : i + chunk], p[i : i + chunk], keys[i : i + chunk], n_points, cfg.sde))
    for i in range(0, len(p), chunk)
  ]
  return np.concatenate(out)[:, cfg.transient :]


def generate(cfg: DataConfig) -> Dataset:
  """Independent keys for the parameters, initial states and noise of every split, and for W."""
  k_w, k_train, k_val, k_test = jax.random.split(jax.random.key(cfg.seed), 4)
  w = np.asarray(jax.random.uniform(k_w, (STATE, cfg.obs_dim), minval=-1.0, maxval=1.0))
  splits = {}
  for name, key, n, points in (
    ("train", k_train, cfg.n_train, cfg.train_points),
    ("val", k_val, cfg.n_val, cfg.train_points),
    ("test", k_test, cfg.n_test, cfg.test_points),
  ):
    k_p, k_sim = jax.random.split(key)
    p = jax.random.uniform(k_p, (n, N_PARAMS))
    if name == "test" and cfg.test_shares_params:
      p = jnp.asarray(splits["train"][1][:n])
    splits[name] = (_simulate(k_sim, p, points, cfg), np.asarray(p))
  return Dataset(
    z_train=splits["train"][0],
    z_val=splits["val"][0],
    z_test=splits["test"][0],
    w=w,
    p_train=splits["train"][1],
    p_val=splits["val"][1],
    p_test=splits["test"][1],
  )
