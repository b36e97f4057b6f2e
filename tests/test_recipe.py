import os
import sys

import numpy as np
import pytest

from andi_jax.data import recipe as rc
from andi_jax.data.recipe import ALPHA_GRID, MODELS, Dataset, Recipe, allowed_alphas, generate

SMALL = dict(T=100, keep=100)  # short simulations keep the tests fast


def _gen(r: Recipe, **kw) -> Dataset:
  return generate(r, workers=kw.pop("workers", 1), progress=False, **kw)


def _equal(a: Dataset, b: Dataset) -> None:
  for f in ("x", "alpha", "model", "noise", "length"):
    np.testing.assert_array_equal(getattr(a, f), getattr(b, f))


@pytest.fixture(scope="module")
def ds600() -> Dataset:
  # 600 > CHUNK_SIZE: two chunks, so a two-worker pool really splits the work
  return _gen(Recipe(n=600, seed=3, **SMALL))


def test_grid_and_allowed_alphas():
  assert (
    len(ALPHA_GRID) == 40 and ALPHA_GRID[0] == pytest.approx(0.05) and ALPHA_GRID[-1] == pytest.approx(2.0)
  )
  expected = {
    "attm": (20, 0.05, 1.0),
    "ctrw": (20, 0.05, 1.0),
    "fbm": (39, 0.05, 1.95),
    "lw": (20, 1.05, 2.0),
    "sbm": (40, 0.05, 2.0),
  }
  for m, (k, lo, hi) in expected.items():
    a = allowed_alphas(m)
    assert len(a) == k and a[0] == pytest.approx(lo) and a[-1] == pytest.approx(hi)
  with pytest.raises(ValueError, match="unknown model"):
    allowed_alphas("bm")


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_every_model_every_dim(dim):
  for label, m in enumerate(MODELS):
    ds = _gen(Recipe(n=4, dim=dim, seed=label, models=(m,), **SMALL))
    assert ds.x.shape == (4, dim, 100) and ds.x.dtype == np.float32
    assert np.isfinite(ds.x).all() and (ds.x[:, :, 1:] != ds.x[:, :, :1]).any()
    assert ds.model.dtype == np.int32 and (ds.model == label).all()
    assert ds.alpha.dtype == np.float32 and np.isin(ds.alpha, allowed_alphas(m).astype(np.float32)).all()
    assert ds.noise.dtype == np.float32 and np.isin(ds.noise, np.float32([0.1, 0.5, 1.0])).all()
    assert ds.length.dtype == np.int32 and ((ds.length >= 10) & (ds.length <= 100)).all()


def test_default_length():
  ds = _gen(Recipe(n=6, seed=1))
  assert ds.x.shape == (6, 1, 1000) and np.isfinite(ds.x).all()
  assert ((ds.length >= 10) & (ds.length <= 999)).all()
  traj = ds.trajectories()
  assert [t.shape for t in traj] == [(1, int(n)) for n in ds.length]
  np.testing.assert_array_equal(traj[0], ds.x[0, :, : ds.length[0]])


def test_balanced_sampler(ds600):
  counts = np.bincount(ds600.model, minlength=5)
  assert (counts > 80).all(), counts  # ~120 each
  for label, m in enumerate(MODELS):
    a = ds600.alpha[ds600.model == label]
    grid = allowed_alphas(m).astype(np.float32)
    assert np.isin(a, grid).all()
    assert len(np.unique(a)) > len(grid) // 2  # spread over the grid, not a corner of it
  for m in ("fbm", "sbm"):  # both regimes (andi's challenge function misses sub-diffusive ones)
    a = ds600.alpha[ds600.model == MODELS.index(m)]
    assert (a < 1).any() and (a > 1).any()
  assert set(ds600.noise.tolist()) == set(np.float32([0.1, 0.5, 1.0]).tolist())
  assert ds600.length.min() >= 10 and ds600.length.max() <= 100


def test_reproducible_and_worker_independent(ds600):
  r = Recipe(n=600, seed=3, **SMALL)
  _equal(_gen(r, workers=2), ds600)
  other = _gen(Recipe(n=20, seed=4, **SMALL))
  assert not np.array_equal(other.x, ds600.x[:20])


def test_keep_stores_a_prefix():
  full = _gen(Recipe(n=20, seed=5, **SMALL))
  short = _gen(Recipe(n=20, seed=5, T=100, keep=30))
  np.testing.assert_array_equal(short.x, full.x[:, :, :30])
  np.testing.assert_array_equal(short.length, np.minimum(full.length, 30))
  np.testing.assert_array_equal(short.alpha, full.alpha)


def test_normalisation_noise_free():
  # Without noise x = d · normalize(raw): every axis has displacement std |d| over the full T.
  ds = _gen(Recipe(n=200, dim=3, seed=6, models=("fbm", "sbm"), noise_levels=(0.0,), **SMALL))
  assert (ds.x[:, :, 0] == 0).all()
  s = np.diff(ds.x.astype(np.float64), axis=-1).std(axis=-1)  # (n, dim)
  np.testing.assert_allclose(s, s[:, :1].repeat(3, axis=1), rtol=1e-4)
  assert abs(s[:, 0].mean() - np.sqrt(2 / np.pi)) < 0.12  # E|N(0, 1)|


def test_constant_velocity_is_not_blown_up():
  rng = np.random.default_rng(0)
  walk = np.cumsum(rng.normal(size=(2, 50)) * 7, axis=1)
  ballistic = 3.3 * np.arange(50.0)  # displacement std is rounding noise, not exactly 0
  out = rc._normalize(np.stack([walk[0], ballistic, np.zeros(50)]))
  assert np.diff(out[0]).std() == pytest.approx(1.0)
  np.testing.assert_allclose(out[1], ballistic)  # left unscaled, as andi does for a zero std
  assert (out[2] == 0).all()
  # LW at alpha = 2 produces such trajectories about a quarter of the time
  ds = _gen(Recipe(n=100, seed=11, models=("lw",), noise_levels=(0.0,), **SMALL))
  flat = np.ptp(np.diff(ds.x, axis=-1), axis=-1)[:, 0] < 1e-3 * np.abs(ds.x).max(axis=-1)[:, 0]
  assert flat.any() and np.abs(ds.x).max() < 1e5


def test_cache(tmp_path, monkeypatch):
  r = Recipe(n=30, seed=7, **SMALL)
  first = _gen(r, cache_dir=tmp_path)
  assert os.listdir(tmp_path) == [f"recipe-{r.key()}.npz"] and len(r.key()) == 16

  def no_simulation(*args):
    raise AssertionError("regenerated despite a cache hit")

  monkeypatch.setattr(rc, "_simulate_chunk", no_simulation)
  _equal(_gen(r, cache_dir=tmp_path), first)
  assert Recipe(n=30, seed=8, **SMALL).key() != r.key()
  with pytest.raises(AssertionError, match="regenerated"):  # a different recipe misses the cache
    _gen(Recipe(n=30, seed=8, **SMALL), cache_dir=tmp_path)


def test_interrupted_cache_write_leaves_nothing(tmp_path, monkeypatch):
  def broken_savez(*args, **kwargs):
    raise KeyboardInterrupt

  monkeypatch.setattr(rc.np, "savez", broken_savez)
  with pytest.raises(KeyboardInterrupt):
    _gen(Recipe(n=3, seed=9, **SMALL), cache_dir=tmp_path)
  assert os.listdir(tmp_path) == []


def test_dataset_methods():
  ds = _gen(Recipe(n=8, dim=2, seed=10, **SMALL))
  assert len(ds) == 8
  np.testing.assert_array_equal(ds.crop(10), ds.x[:, :, :10])
  assert ds.crop(100).shape == (8, 2, 100)
  for bad in (9, 101):
    with pytest.raises(ValueError, match="crop length"):
      ds.crop(bad)
  sub = ds.subset([5, 1])
  assert len(sub) == 2 and sub.model.tolist() == ds.model[[5, 1]].tolist()
  np.testing.assert_array_equal(sub.x[0], ds.x[5])
  np.testing.assert_array_equal(ds.subset(ds.model == ds.model[0]).alpha, ds.alpha[ds.model == ds.model[0]])


@pytest.mark.parametrize(
  "kw, what",
  [
    (dict(n=0), "n must be"),
    (dict(n=1.5), "n must be an int"),
    (dict(n=1, dim=4), "dim"),
    (dict(n=1, seed=-1), "seed"),
    (dict(n=1, T=5, keep=5), "T must be"),
    (dict(n=1, T=100, keep=200), "keep"),
    (dict(n=1, min_length=5), "min_length"),
    (dict(n=1, min_length=50, max_length=20), "min_length"),
    (dict(n=1, models=("fbm", "bm")), "models"),
    (dict(n=1, models=("fbm", "fbm")), "models"),
    (dict(n=1, models=()), "models"),
    (dict(n=1, noise_levels=(-0.1,)), "noise_levels"),
    (dict(n=1, noise_levels=()), "noise_levels"),
  ],
)
def test_recipe_validation(kw, what):
  with pytest.raises(ValueError, match=what):
    Recipe(**kw)


def test_recipe_normalises_sequences():
  r = Recipe(n=1, models=["sbm"], noise_levels=[1])
  assert r.models == ("sbm",) and r.noise_levels == (1.0,)
  assert r.key() == Recipe(n=1, models=("sbm",), noise_levels=(1.0,)).key()


def test_missing_andi_datasets(monkeypatch):
  monkeypatch.setitem(sys.modules, "andi_datasets.models_theory", None)
  with pytest.raises(ImportError, match="sh setup.sh"):
    _gen(Recipe(n=1, **SMALL))
