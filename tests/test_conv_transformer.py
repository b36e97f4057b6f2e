import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from andi_jax import infer
from andi_jax.data.preprocess import left_pad, standardize
from andi_jax.data.recipe import Recipe, generate
from andi_jax.methods.all_lengths import prepare, train_all_lengths
from andi_jax.models import build_model
from andi_jax.models.conv_transformer import WindowConv, _pool_words
from andi_jax.train.engine import TrainConfig

SMALL = {"width": 32, "heads": 2, "mlp": 64, "strides": (2, 2)}


@pytest.fixture(scope="module")
def model_params():
  model, _ = build_model("conv_transformer", SMALL)
  params = model.init(jax.random.key(0), jnp.zeros((1, 64)), jnp.array([64]))["params"]
  return model, params


@pytest.mark.parametrize(
  "length, channels, kernel, stride, padding",
  [(50, 2, 5, 2, (2, 2)), (7, 64, 5, 2, (2, 2)), (1000, 2, 5, 1, (2, 2)), (11, 3, 4, 3, (1, 2))],
)
def test_window_conv_is_flax_conv(length, channels, kernel, stride, padding):
  # training's matrix product over windows and inference's convolution both reproduce nn.Conv
  x = jax.random.normal(jax.random.key(1), (3, length, channels))
  conv = nn.Conv(8, (kernel,), strides=(stride,), padding=(padding,))
  params = conv.init(jax.random.key(0), x)
  expected = conv.apply(params, x)
  for train in (True, False):
    np.testing.assert_allclose(
      WindowConv(8, kernel, stride, padding).apply(params, x, train), expected, rtol=1e-5, atol=1e-5
    )


def test_padding_and_batch_do_not_change_outputs(model_params):
  model, params = model_params
  rng = np.random.default_rng(0)
  # 100 and 700 points make 25 and 175 words: pooled to at most max_tokens (16), in groups of 2 and 11
  rows = [standardize(np.cumsum(rng.normal(size=L))[None])[0] for L in (10, 11, 13, 37, 64, 100, 700)]
  outs = [np.asarray(model.apply({"params": params}, *left_pad(rows, w))) for w in (700, 768, 1024)]
  np.testing.assert_allclose(outs[0], outs[1], atol=2e-6)
  np.testing.assert_allclose(outs[0], outs[2], atol=2e-6)
  for i in (3, 6):
    alone = np.asarray(model.apply({"params": params}, *left_pad(rows[i : i + 1], 768)))
    np.testing.assert_allclose(alone[0], outs[1][i], atol=2e-6)
  # what lies in the padding is ignored
  x, length = left_pad(rows, 768)
  x[0, : 768 - 10] = 1e3
  np.testing.assert_allclose(np.asarray(model.apply({"params": params}, x, length)), outs[1], atol=2e-6)


def test_pool_words_averages_groups_sized_by_the_row():
  h = jnp.arange(2 * 40 * 1, dtype=jnp.float32).reshape(2, 40, 1)
  pooled, n = _pool_words(h, jnp.array([40, 16]), 16)
  assert pooled.shape == (2, 16, 1) and n.tolist() == [14, 16]  # 40 words: groups of 3, the last of 1
  np.testing.assert_allclose(pooled[0, :14, 0], [*(3 * np.arange(13) + 1.0), 39.0])
  np.testing.assert_allclose(pooled[1, :, 0], np.arange(40, 56))  # 16 words: untouched


def test_predictor_compiles_once_per_bucket(model_params):
  model, params = model_params
  stacked = jax.tree.map(lambda a: jnp.stack([a, a]), params)
  pred = infer.AllLengthsPredictor(model, stacked, task=1, classes=None)
  rng = np.random.default_rng(1)
  trajs = [np.cumsum(rng.normal(size=L)) for L in rng.integers(33, 64, 40)]  # all in the 64 bucket
  first = pred.predict(trajs, batch_size=16)  # batches of 16, 16 and a tail of 8 rows
  traces = dict(pred.forward.traces)
  second = pred.predict(trajs[:7], batch_size=16)  # a different count, one tail batch of 8 rows
  assert dict(pred.forward.traces) == traces
  np.testing.assert_allclose(first[:7], second, atol=1e-6)  # independent of batch companions
  assert pred.predict([]).shape == (0,)


@pytest.fixture(scope="module")
def recipe_data(tmp_path_factory):
  ds = generate(
    Recipe(n=3000, seed=5, T=200, keep=100, min_length=50, max_length=100),
    workers=2,
    cache_dir=tmp_path_factory.mktemp("cache"),
    progress=False,
  )
  x, length = prepare([t[0] for t in ds.trajectories()])
  return ds, x[:, -128:], length


def test_task2_learns_and_checkpoint_round_trip(recipe_data, tmp_path):
  ds, x, length = recipe_data
  config = TrainConfig(task=2, batch_size=128, max_epochs=4, learning_rate=3e-3, checkpoint_every=1000)
  out = train_all_lengths(
    x[:2500],
    length[:2500],
    ds.model[:2500],
    tmp_path,
    task=2,
    model_config=SMALL,
    folds=2,
    train_config=config,
    progress=False,
  )
  assert max(out["val_metric"]) < 0.6  # error rate; chance is 0.8 for five balanced classes
  pred = infer.load(tmp_path)
  test = ds.trajectories()[2500:]
  proba = pred.predict(test)
  assert proba.shape == (500, 5) and np.allclose(proba.sum(1), 1, atol=1e-5)
  assert np.mean(proba.argmax(1) == ds.model[2500:]) > 0.4
  # the exported checkpoint reproduces the trained parameters' fold-averaged forward
  model, _ = build_model("conv_transformer", {**SMALL, "outputs": 5})
  direct = jax.vmap(lambda p: jax.nn.softmax(model.apply({"params": p}, x[2500:2510], length[2500:2510])))(
    pred.params
  ).mean(0)
  np.testing.assert_allclose(proba[:10], np.asarray(direct), atol=1e-5)
