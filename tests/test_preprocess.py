"""Standardisation that cannot overflow, and predictions refused for series no model can answer for."""

import numpy as np
import pytest

from andi_jax import infer
from andi_jax.data.preprocess import UnpredictableTrajectory, refuse_unpredictable, standardize


def _plain(x):
  x = np.asarray(x, np.float64)
  return ((x - x.mean(-1, keepdims=True)) / x.std(-1, keepdims=True)).astype(np.float32)


def test_normal_data_standardise_as_plain_formula():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(64, 57)).cumsum(1) * rng.uniform(1e-3, 1e3, (64, 1)) + rng.normal(0, 100, (64, 1))
  np.testing.assert_array_equal(standardize(x), _plain(x))  # bit for bit
  x32 = x.astype(np.float32)
  np.testing.assert_array_equal(standardize(x32), _plain(x32))
  np.testing.assert_array_equal(standardize(np.full((2, 10), 3.0)), 0)  # constant rows stay at zero


def test_ballistic_walk_standardises_alike_at_any_scale():
  rng = np.random.default_rng(1)
  walk = np.cumsum(1 + 0.1 * rng.normal(size=(3, 100)), axis=1)
  want = standardize(walk)
  for scale in (1, 1e150, 1e154, 1e200, 1e300, 1e-200):
    got = standardize(walk * scale)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
  with np.errstate(over="ignore"):  # the plain formula's variance overflows: every point becomes 0
    assert not _plain(walk * 1e200).any()


def test_refuse_names_first_constant_or_non_finite_row():
  good = standardize(np.arange(12.0)[None])[0]
  refuse_unpredictable([good, good[:10]], str)
  with pytest.raises(UnpredictableTrajectory, match=r"^row 1: constant \(all increments zero\)$"):
    refuse_unpredictable([good, standardize(np.full((1, 11), 7.0))[0], good], lambda i: f"row {i}")
  with pytest.raises(UnpredictableTrajectory, match="^row 2: not finite after standardisation$"):
    refuse_unpredictable([good, good, np.r_[good, np.nan]], lambda i: f"row {i}")


@pytest.fixture(scope="module")
def predictors():
  """Predictors without networks: a refusal must come before any model runs."""
  return (
    infer.Predictor(None, np.array([10, 45]), {}, scale=1.0, clip=(0.05, 2.0)),
    infer.AllLengthsPredictor(None, None, task=1, classes=None),
  )


def _walk(T, seed=0):
  return np.random.default_rng(seed).normal(size=T).cumsum()


def _beyond_float64():
  """A walk reaching 1e380: held by a long double wider than float64, read as inf in float64."""
  if np.finfo(np.longdouble).maxexp > np.finfo(np.float64).maxexp:
    return _walk(30).astype(np.longdouble) * np.longdouble(10) ** 380
  return np.r_[_walk(29), np.inf]


@pytest.mark.parametrize(
  "trajectories, message",
  [
    ([_walk(20), _walk(30), np.full(25, 1e300)], r"trajectory 2: constant \(all increments zero\)"),
    ([_walk(20), _beyond_float64()], "trajectory 1: not finite after standardisation"),
    ([np.r_[_walk(20), np.nan]], "trajectory 0: not finite after standardisation"),
    ([np.stack([_walk(40), np.zeros(40)])], r"trajectory 0 \(axis 1\): constant"),
    ([_walk(20), [1, 2] * 5 + [10**400]], "trajectory 1: positions beyond the float64 range"),
  ],
)
def test_predict_refuses_naming_the_trajectory(predictors, trajectories, message):
  for predictor in predictors:
    with pytest.raises(UnpredictableTrajectory, match=f"^{message}"):
      predictor.predict(trajectories)


def test_per_length_predict_refuses_a_constant_window(predictors):
  moving_late = np.r_[np.zeros(45), _walk(5)]  # windows: points 0-44 (constant) and 5-49
  with pytest.raises(UnpredictableTrajectory, match=r"^trajectory 1 \(points 0-44\): constant"):
    predictors[0].predict([_walk(50), moving_late])


def test_extreme_but_finite_positions_are_predictable():
  walk = np.cumsum(1 + 0.1 * np.random.default_rng(2).normal(size=60))
  _, standardized, _, _ = infer._checked_series([walk, walk * 1e300, np.stack([walk, -walk]) * 1e-300])
  for z in standardized:
    np.testing.assert_allclose(np.abs(z), np.abs(standardized[0]), rtol=1e-6, atol=1e-6)
