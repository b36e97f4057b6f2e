import jax
import numpy as np
import pytest

from andi_jax import infer
from andi_jax.data.preprocess import standardize
from andi_jax.models import build_model
from andi_jax.train.engine import Ensemble, TrainConfig

CFG = {"hidden": 8, "layers": 2, "dropout": 0.2, "outputs": 1}


@pytest.fixture(scope="module")
def predictor():
  model, _ = build_model("lstm", CFG)
  state = Ensemble(model, TrainConfig(batch_size=8)).init(4, 10)  # 2 lengths x 2 folds
  params = {L: jax.tree.map(lambda a: a[2 * i : 2 * i + 2], state.params) for i, L in enumerate((10, 45))}
  return infer.Predictor(model, np.array([10, 45]), params, scale=1.011, clip=(0.05, 2.0))


def _direct(pred, length, window):
  """The fold-averaged raw output of one standardised window, computed without the predictor."""
  outs = [
    pred.model.apply(
      {"params": jax.tree.map(lambda a: a[f], pred.params[length])},
      standardize(window[None]),
      np.array([len(window)]),
      train=False,
    )[0, 0]
    for f in range(2)
  ]
  return float(np.mean(outs))


def test_seed_rule_windows_folds_scale_clip_axes(predictor):
  rng = np.random.default_rng(0)
  t10, t49, t2d = (
    rng.normal(size=10).cumsum(),
    rng.normal(size=49).cumsum(),
    rng.normal(size=(2, 60)).cumsum(1),
  )
  got = predictor.predict([t10, t49, t2d], batch_size=8)
  post = lambda a: np.clip(a * 1.011, 0.05, 2.0)
  want = [
    post(_direct(predictor, 10, t10)),
    post((_direct(predictor, 45, t49[:45]) + _direct(predictor, 45, t49[4:])) / 2),
    np.mean([post((_direct(predictor, 45, ax[:45]) + _direct(predictor, 45, ax[15:])) / 2) for ax in t2d]),
  ]
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_windows_rule(predictor):
  assert predictor.windows(np.arange(45.0))[0] == 45 and len(predictor.windows(np.arange(45.0))[1]) == 1
  Tn, wins = predictor.windows(np.arange(49.0))
  assert Tn == 45 and wins[0][0] == 0 and wins[1][0] == 4 and wins[1][-1] == 48
  assert predictor.windows(np.arange(44.0))[0] == 10
  with pytest.raises(ValueError, match="trajectory 1 has 9 points; at least 10"):
    predictor.predict([np.arange(20.0), np.arange(9.0)])


def test_no_recompilation_and_batch_independence(predictor):
  rng = np.random.default_rng(1)
  trajs = [rng.normal(size=L).cumsum() for L in rng.integers(46, 64, 30)]  # two 45-point windows each
  first = predictor.predict(trajs, batch_size=8)
  for n in range(1, 5):  # 2n windows: every tail rung (8, 4, 2 rows) and a full batch
    predictor.predict(trajs[:n], batch_size=8)
  traces = dict(predictor.forward.traces)
  shapes = {k: v for k, v in traces.items() if k[0] == 45}
  assert {rows for _, rows in shapes} <= {8, 4, 2, 1} and set(shapes.values()) == {1}
  # Different counts, lengths and batch mates: same bucket, no new trace, same answers.
  again = predictor.predict(trajs[::-1][:13] + [rng.normal(size=50).cumsum()], batch_size=8)
  assert dict(predictor.forward.traces) == traces
  np.testing.assert_allclose(again[:13], first[::-1][:13], rtol=1e-5, atol=1e-6)


def test_input_order_preserved(predictor):
  rng = np.random.default_rng(2)
  trajs = [rng.normal(size=L).cumsum() for L in (10, 500, 12, 45, 999)]
  whole = predictor.predict(trajs, batch_size=8)
  one_by_one = [predictor.predict([t], batch_size=8)[0] for t in trajs]
  np.testing.assert_allclose(whole, one_by_one, rtol=1e-5, atol=1e-6)
