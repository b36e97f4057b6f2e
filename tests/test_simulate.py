"""On-device AnDi generators: exact replay of andi-datasets, statistics, and the recipe sampler."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from andi_jax.bench import generation
from andi_jax.data import preprocess, recipe
from andi_jax.data import simulate as sim
from andi_jax.studies import generator_validation as val

GRID = recipe.ALPHA_GRID
# grid ends, the middle, and the special values (alpha = 1: FBM's H = 1/2 shortcut; alpha = 2: LW's sigma)
ALPHAS = {
  "attm": (0.05, 0.5, 1.0),
  "ctrw": (0.05, 0.5, 1.0),
  "fbm": (0.05, 1.0, 1.95),
  "lw": (1.05, 1.5, 2.0),
  "sbm": (0.05, 1.0, 2.0),
}


def cases(model):
  """(alpha, T, dim, seed): every T in 1D, T = 37 in 2D and 3D. Grid alphas in float64, as andi's.

  A subset; experiments/validate_generators.py replays a larger sweep.
  """
  alphas = [float(GRID[np.argmin(np.abs(GRID - a))]) for a in ALPHAS[model]]
  one_d = [
    (a, T, 1, 10 * i + j)
    for (i, a), (j, T) in itertools.product(enumerate(alphas), enumerate((10, 37, 100, 1000)))
  ]
  return one_d + [(a, 37, d, d) for a, d in itertools.product(alphas, (2, 3))]


replay = functools.cache(sim.andi_replay)  # the float64 and float32 tests share andi's runs
CORES = {name: jax.jit(core, static_argnums=1) for name, core in sim.CORE.items()}


@pytest.fixture
def x64():
  with jax.enable_x64(True):
    yield


def relative_error(model, alpha, T, dim, seed, dtype, **core_kw):
  noise, x = replay(model, alpha, T, dim, seed)
  noise = {k: jnp.asarray(v, dtype if np.asarray(v).dtype.kind == "f" else None) for k, v in noise.items()}
  y = np.asarray(sim.positions(CORES[model](jnp.asarray(alpha, dtype), T, noise, **core_kw)), np.float64)
  assert y.shape == x.shape == (dim, T)
  return np.max(np.abs(y - x)) / max(np.max(np.abs(x)), 1e-300)


def event_margin(model, alpha, T, noise) -> float:
  """Distance of the nearest event time that andi floors (within the trajectory) to an integer."""
  v = noise["v"]
  if model == "ctrw":
    t = np.cumsum(v ** (-1 / alpha))
    t = t[t < T + 1]
  else:
    sigma = {"attm": alpha, "lw": noise["u_sigma"] if alpha == 2 else 3 - alpha}[model]
    t = v ** (-1 / sigma)
    start = np.concatenate([[0], np.cumsum(np.where(t > T, T + 1, np.floor(t)))[:-1]])
    t = t[(start < T) & (t < T)]
  return float(np.min(np.abs(t - np.round(t)), initial=1.0))


@pytest.mark.parametrize("model", recipe.MODELS)
def test_replay_float64(model, x64):
  for alpha, T, dim, seed in cases(model):
    assert relative_error(model, alpha, T, dim, seed, jnp.float64) <= 1e-10, (alpha, T, dim, seed)


@pytest.mark.parametrize("model", recipe.MODELS)
def test_replay_float32(model):
  """1e-5, except where float32 rounding moves an event time across the integer andi floors it to."""
  excused = []
  for alpha, T, dim, seed in cases(model):
    kw = (
      {"sqrt_eigenvalues": jnp.asarray(sim.fbm_eigenvalue_table([alpha], T)[0], jnp.float32)}
      if model == "fbm"
      else {}
    )
    if relative_error(model, alpha, T, dim, seed, jnp.float32, **kw) > 1e-5:
      assert model in ("attm", "ctrw", "lw"), (alpha, T, dim, seed)
      assert event_margin(model, alpha, T, replay(model, alpha, T, dim, seed)[0]) < 1e-4, (
        alpha,
        T,
        dim,
        seed,
      )
      excused.append((alpha, T, dim, seed))
  assert len(excused) <= 1, excused


def test_fbm_in_graph_eigenvalues_float32():
  """Without the float64 table, float32 loses ~1e-4 of the smallest (low-frequency) eigenvalues."""
  for alpha, T, dim, seed in cases("fbm"):
    assert relative_error("fbm", alpha, T, dim, seed, jnp.float32) <= 5e-4, (alpha, T, dim, seed)


def test_normalize_matches_recipe(x64):
  """On increments, as recipe._normalize (andi's normalize; constant-velocity axes left unscaled)."""
  rows = [
    ("ctrw", 0.05, 3),
    ("lw", 2.0, 0),
    ("lw", 2.0, 2),
    ("attm", 0.05, 0),
    ("fbm", 0.5, 0),
    ("sbm", 1.5, 1),
  ]
  flat = 0
  for model, alpha, seed in rows:
    _, raw = replay(model, float(GRID[np.argmin(np.abs(GRID - alpha))]), 100, 2, seed)
    ours = np.asarray(sim.positions(sim.normalize(jnp.asarray(np.diff(raw)))))
    np.testing.assert_allclose(ours, recipe._normalize(raw), rtol=0, atol=1e-10 * np.abs(ours).max())
    flat += int(np.sum(np.all(np.diff(raw) == np.diff(raw)[:, :1], axis=1)))
  assert flat >= 2  # the all-zero CTRW and LW single flights really exercised the unscaled branch


def test_normalize_float32_tiny_scale():
  dx = jax.random.normal(jax.random.key(0), (2, 99))
  np.testing.assert_allclose(sim.normalize(dx * 1e-34), sim.normalize(dx), rtol=1e-5)
  assert np.isfinite(sim.normalize(dx * 1e-34)).all()


def test_vmap_jit_match_single_calls():
  keys = jax.random.split(jax.random.key(3), 3)
  alphas = jnp.array([1.05, 1.6, 2.0])
  simulate = jax.jit(sim.simulate, static_argnums=(1, 3, 4))
  batched = jax.jit(jax.vmap(sim.simulate, in_axes=(0, None, 0, None, None)), static_argnums=(1, 3, 4))(
    keys, "lw", alphas, 40, 2
  )
  assert batched.shape == (3, 2, 40) and np.all(batched[:, :, 0] == 0)
  for i in range(3):
    np.testing.assert_allclose(batched[i], simulate(keys[i], "lw", alphas[i], 40, 2), rtol=1e-5, atol=1e-5)


@pytest.mark.filterwarnings("ignore:ks_2samp:RuntimeWarning")  # exact KS falls back to asymptotic on ties
@pytest.mark.parametrize("model", recipe.MODELS)
def test_statistics_match_andi(model):
  """Independent randomness, fixed seeds (deterministic p-values), n = 1000 at T = 1000: every p-value of the
  report's cell is above the failure threshold, and the same tests tell alpha from alpha +- 0.2 (so agreement
  is not for lack of power)."""
  grid = recipe.allowed_alphas(model)
  for seed, a in enumerate(val.SPOT_ALPHAS[model]):
    i = val.grid_index(model, a)
    ref = val.andi_cell(model, grid[i], 1000, 1000, 1, seed)
    row = val.cell_pvalues(model, grid[i], ref, val.jax_cell(model, i, 1000, 1000, 1, seed))
    assert min(val.pvalues(row).values()) > val.FAIL, (a, row)
    shifted = i + 4 if i + 4 < len(grid) else i - 4
    row = val.cell_pvalues(model, grid[i], ref, val.jax_cell(model, shifted, 1000, 1000, 1, seed))
    assert min(val.pvalues(row).values()) < val.FAIL, (a, grid[shifted], row)


# --- the recipe sampler -----------------------------------------------------------------------

sample = jax.jit(sim.sample_recipe, static_argnums=(1, 2))


def check_batch(b, batch, width, dim, models, levels):
  shape = (batch, width) if dim == 1 else (batch, dim, width)
  assert b.x.shape == shape and b.x.dtype == jnp.float32 and np.isfinite(b.x).all()
  assert b.length.dtype == b.model.dtype == jnp.int32 and b.alpha.dtype == b.noise.dtype == jnp.float32
  x = np.asarray(b.x).reshape(batch, dim, width)
  for i in range(batch):
    L = int(b.length[i])
    assert np.all(x[i, :, : width - L] == 0)  # left padding
    real = x[i, :, width - L :]
    np.testing.assert_allclose(real.mean(-1), 0, atol=1e-5)
    np.testing.assert_allclose(real.std(-1), 1, atol=1e-4)
    name = recipe.MODELS[int(b.model[i])]
    assert name in models and b.alpha[i] in recipe.allowed_alphas(name).astype(np.float32)
    assert b.noise[i] in np.float32(levels)


def test_sample_recipe_bucket():
  config = sim.DeviceRecipe(length=(10, 40), T=60)
  b = sample(jax.random.key(0), 50, config)
  check_batch(b, 50, 40, 1, recipe.MODELS, (0.1, 0.5, 1.0))
  assert b.length.min() >= 10 and b.length.max() <= 40 and len(np.unique(b.length)) > 10
  # the pool holds ceil(50 / 5) rows of each model and all are picked: labels in andi's order
  np.testing.assert_array_equal(np.bincount(b.model, minlength=5), [10] * 5)
  for field, a, c in zip(b._fields, b, sample(jax.random.key(0), 50, config)):
    np.testing.assert_array_equal(a, c, err_msg=field)  # determined by the key
  assert not np.array_equal(b.x, sample(jax.random.key(1), 50, config).x)


def test_sample_recipe_fixed_length_3d():
  config = sim.DeviceRecipe(length=30, dim=3, T=50, models=("fbm", "lw"), noise_levels=(0.0, 2.0))
  b = sample(jax.random.key(2), 9, config)
  check_batch(b, 9, 30, 3, ("fbm", "lw"), (0.0, 2.0))
  assert np.all(b.length == 30)


def test_crop_standardize_matches_preprocess():
  x = np.random.default_rng(0).normal(size=(6, 2, 50)).cumsum(-1).astype(np.float32)
  length = np.array([10, 11, 25, 30, 30, 12], np.int32)
  ours = np.asarray(sim.crop_standardize(jnp.asarray(x), jnp.asarray(length), 30))
  for axis in range(2):
    ref, _ = preprocess.left_pad(
      [preprocess.standardize(r[axis, :L][None])[0] for r, L in zip(x, length)], 30
    )
    np.testing.assert_allclose(ours[:, axis], ref, atol=1e-5)


def test_device_recipe_validates():
  for bad in [
    dict(length=(40, 10)),
    dict(length=2000),
    dict(length=20, dim=4),
    dict(length=20, models=("bm",)),
    dict(length=20, noise_levels=(-1.0,)),
  ]:
    with pytest.raises(ValueError):
      sim.DeviceRecipe(**bad)


def test_throughput_runs_tiny():
  rows = generation.throughput(
    Ts=(20,), batch=8, repeats=1, andi_n=4, andi_repeats=1, workers=1, models=("sbm",)
  )
  assert [(r["model"], r["T"]) for r in rows] == [("sbm", 20), ("recipe", 20)]
  assert all(r["jax_per_s"] > 0 and r["andi_per_s"] > 0 for r in rows)
