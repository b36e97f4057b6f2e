import numpy as np
import pytest

from andi_jax import metrics


def test_mae_and_f1():
  assert metrics.mae([1.0, 2.0], [1.5, 1.0]) == pytest.approx(0.75)
  assert metrics.f1_micro([0, 1, 2, 2], [0, 1, 1, 2]) == pytest.approx(0.75)
  np.testing.assert_array_equal(metrics.confusion([0, 1, 1], [0, 0, 1], 2), [[1, 1], [0, 1]])
  # per class 2 TP / (2 TP + FP + FN): 1, 2/3, 2/3, and 0 for a class absent from both
  np.testing.assert_allclose(metrics.f1_per_class([0, 1, 2, 2], [0, 1, 1, 2], 4), [1, 2 / 3, 2 / 3, 0])
  assert metrics.f1_macro([0, 1, 2, 2], [0, 1, 1, 2], 3) == pytest.approx(7 / 9)


def test_by_length_buckets():
  rows = metrics.by_length(metrics.mae, [0, 0, 0, 0], [1, 2, 3, 4], [10, 49, 50, 999])
  assert [(r["bucket"], r["n"]) for r in rows] == [
    ("all", 4),
    ("[10,50)", 2),
    ("[50,100)", 1),
    ("[100,500)", 0),
    ("[500,1000)", 1),
  ]
  assert rows[1]["value"] == pytest.approx(1.5) and np.isnan(rows[3]["value"])


def test_tamsd_alpha_on_brownian_and_ballistic():
  rng = np.random.default_rng(0)
  brownian = [metrics.tamsd_alpha(np.cumsum(rng.normal(size=(2, 1000)), 1)) for _ in range(20)]
  assert np.mean(brownian) == pytest.approx(1.0, abs=0.1)
  assert metrics.tamsd_alpha(np.arange(100.0) * 0.3) == pytest.approx(2.0)
  assert metrics.tamsd_alpha(np.zeros(50)) == 0.05  # no motion: clipped at the lower bound
