import dataclasses

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from andi_jax.goku import baselines as goku_baselines
from andi_jax.goku import model as goku
from andi_jax.goku import stuart_landau as sl
from andi_jax.goku.train import Schedule, TrainConfig, Trainer, naive, nrmse, plateau_update
from andi_jax.train import checkpoint
from andi_jax.train.loop import ConfigMismatchError

TINY = dict(
  obs_dim=16, hidden=16, rnn_input=8, z0_rnn=8, rnn_output=8, z0_latent=4, theta_latent=8, latent_to_diffeq=16
)


@pytest.fixture(scope="module")
def data():
  # 66 points per trajectory after the transient: room for 46-step windows and a 20-step forecast;
  # splits of one shape share one compiled solve
  return sl.generate(
    sl.DataConfig(
      n_train=64,
      n_val=64,
      n_test=64,
      train_points=166,
      test_points=166,
      obs_dim=16,
      sde=sl.SDEConfig(dt0=0.0125, solver="heun", brownian="grid"),
    )
  )


def test_drift_matches_hand_computation():
  z = np.array([0.3, -0.2, 0.5, 0.1, 0.4, -0.3])
  p = np.linspace(0.05, 0.95, 15)
  a, w = 0.4 * p[:3] - 0.2, np.pi * (0.06 * p[3:6] + 0.08)
  c = lambda i, j: 0.2 * p[6 + i + 3 * j]  # Julia's column-major reshape: C[i, j] = C_vec[i + 3j]
  x, y = z[:3], z[3:]
  want = np.zeros(6)
  for j in range(3):
    r2 = x[j] ** 2 + y[j] ** 2
    cx = sum(c(i, j) * (x[i] - x[j]) for i in range(3))
    cy = sum(c(i, j) * (y[i] - y[j]) for i in range(3))
    want[j] = 20 * ((a[j] - r2) * x[j] - w[j] * y[j] + 0.1 * cx)
    want[3 + j] = 20 * ((a[j] - r2) * y[j] + w[j] * x[j] + 0.1 * cy)
  got = sl.drift(0.0, jnp.asarray(z, jnp.float32), sl.data_scale(jnp.asarray(p, jnp.float32)))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_parameter_scales():
  lo, hi = jnp.zeros(15), jnp.ones(15)
  (
    np.testing.assert_allclose(sl.data_scale(lo)[0], -0.2),
    np.testing.assert_allclose(sl.data_scale(hi)[0], 0.2),
  )
  np.testing.assert_allclose(sl.data_scale(hi)[1], jnp.pi * 0.14, rtol=1e-6)
  (
    np.testing.assert_allclose(sl.model_scale(lo)[0], -1.0),
    np.testing.assert_allclose(sl.model_scale(hi)[1], 1.0),
  )
  np.testing.assert_allclose(sl.model_scale(hi)[2], 0.2)


def test_sde_solve_shapes_finite_and_noise():
  cfg = sl.SDEConfig()
  p = jax.random.uniform(jax.random.key(0), (8, 15))
  z0 = jax.random.uniform(jax.random.key(1), (8, 6), minval=-1.0, maxval=1.0)

  @jax.jit
  def paths(z0, p, keys, noise):
    c = dataclasses.replace(cfg, noise=noise)
    return jax.vmap(lambda z, q, k: sl.solve(z, sl.model_scale(q), k, 10, c))(z0, p, keys)

  keys = jax.random.split(jax.random.key(2), 8)
  ys = paths(z0, p, keys, 0.02)
  assert ys.shape == (8, 10, 6) and bool(jnp.all(jnp.isfinite(ys)))
  np.testing.assert_allclose(ys[:, 0], z0, atol=1e-6)
  assert float(jnp.max(jnp.abs(ys - paths(z0, p, jax.random.split(jax.random.key(3), 8), 0.02)))) > 1e-3
  # Without noise the scheme is Heun on the drift: second order, close to an accurate ODE solve.
  ode = jax.jit(
    jax.vmap(
      lambda z, q: (
        diffrax.diffeqsolve(
          diffrax.ODETerm(sl.drift),
          diffrax.Tsit5(),
          0.0,
          0.45,
          0.001,
          z,
          args=sl.model_scale(q),
          saveat=diffrax.SaveAt(ts=jnp.linspace(0.0, 0.45, 10)),
          stepsize_controller=diffrax.PIDController(rtol=1e-7, atol=1e-7),
        ).ys
      )
    )
  )(z0, p)
  err = float(jnp.max(jnp.abs(paths(z0, p, keys, 0.0) - ode)))
  assert err < 0.02, err


def test_windows_join_and_continuity():
  assert goku.n_windows(46, 10) == 5
  with pytest.raises(ValueError):
    goku.n_windows(45, 10)
  seq = jnp.arange(2 * 19 * 3, dtype=jnp.float32).reshape(2, 19, 3)  # B=2, T=19, S=3: two windows of 10
  paths = jnp.stack([seq[:, 0:10], seq[:, 9:19]], axis=1)
  np.testing.assert_array_equal(goku.join_windows(paths, 10), seq)
  assert float(goku.continuity_loss(paths, 10)) == 0.0
  bumped = paths.at[0, 1, 0, 2].add(3.0)  # sample 0, second window's first point, dimension 2
  # mean over B x boundaries x S = 2 x 1 x 3 of the squared jumps
  assert float(goku.continuity_loss(bumped, 10)) == pytest.approx(9.0 / 6)
  joined = goku.join_windows(bumped, 10)
  assert float(joined[0, 9, 2]) == float(seq[0, 9, 2]) + 3.0  # the later window gives the boundary
  # a forecast extends the last window only: 9 + 15 points
  long = jnp.zeros((2, 2, 15, 3))
  assert goku.join_windows(long, 10).shape == (2, 24, 3)


def test_nrmse_definition():
  x = jnp.array([[[1.0, -1.0], [2.0, 0.0]], [[0.0, 3.0], [-1.0, 1.0]]])  # (N=2, T=2, D=2)
  x_hat = jnp.zeros_like(x).at[0, 0, 0].set(1.0)
  scale = np.abs(np.asarray(x)).mean()  # one scalar for the whole tensor: 9 / 8
  want = np.sqrt([np.mean([0, 1, 4, 0]), np.mean([0, 9, 1, 1])]) / scale
  np.testing.assert_allclose(nrmse(x, x_hat), want, rtol=1e-6)
  # scored in pieces with the whole tensor's scale, it agrees
  np.testing.assert_allclose(nrmse(x[1:], x_hat[1:], scale), want[1:], rtol=1e-6)
  np.testing.assert_allclose(naive(x)[0], [[1.5, -0.5], [1.5, -0.5]])


def test_data_splits(data):
  assert data.z_train.shape == data.z_val.shape == data.z_test.shape == (64, 66, 6)
  assert data.w.shape == (6, 16)
  assert np.all(np.isfinite(data.z_train)) and np.all(np.abs(data.w) <= 1)
  for a, b in ((data.p_train, data.p_val), (data.p_train, data.p_test), (data.p_val, data.p_test)):
    assert not np.any(np.isclose(a[: len(b)], b[: len(a)]).all(-1))


def test_julia_plateau_schedule():
  cfg = TrainConfig(
    learning_rate=1.0,
    min_lr=0.0,
    warmup_steps=10,
    threshold=0.01,
    patience_first=2,
    patience_next=1,
    cos4_period=4,
    cos4_decay=0.5,
    stop_patience=4,
  )
  zero = jnp.zeros((), jnp.int32)
  s = Schedule(
    lr=jnp.float32(1.0),
    best=jnp.float32(jnp.inf),
    since_best=zero,
    stale=zero,
    k=zero + 1,
    patience=zero + 2,
    stop_at=zero + 1000,
    stopped=jnp.bool_(False),
  )
  same = jax.tree.map(lambda a, b: bool(a == b), plateau_update(s, jnp.float32(0.5), 10, cfg), s)
  assert jax.tree.all(same)  # still warming up
  lrs, stopped = [], []
  for val in (1.0, 0.995, 0.995, 0.995, 0.995, 0.995, 0.1):
    s = plateau_update(s, jnp.float32(val), 11, cfg)
    lrs.append(float(s.lr))
    stopped.append(bool(s.stopped))
  # 0.995 is within the 1% threshold of 1.0: no improvement. After more than 2 such checks,
  # k = 2: lr = 0.5 cos^4(pi / 4) = 0.125; after more than 1 more, k = 3: 0.25 cos^4(pi / 2) = 0.
  # The fifth check without improvement exceeds stop_patience = 4; a stopped run no longer changes.
  np.testing.assert_allclose(lrs, [1.0, 1.0, 1.0, 0.125, 0.125, 0.0, 0.0], atol=1e-7)
  assert stopped == [False] * 5 + [True, True]
  assert float(s.best) == 1.0 and int(s.k) == 3


def test_lstm_autoencoder_rollout():
  # (the Latent ODE baseline runs in the experiment's smoke configuration: its compile is too slow here)
  cfg = goku_baselines.BaselineConfig(
    obs_dim=16, hidden=16, rnn_input=8, z0_rnn=8, z0_latent=4, latent_to_diffeq=16, ae_state=6
  )
  model = goku_baselines.LSTMAutoencoder(cfg)
  x = jax.random.normal(jax.random.key(0), (3, 12, 16))
  params = jax.jit(lambda k: goku.init_params(model, k, x))(jax.random.key(1))
  apply = jax.jit(
    lambda p, forecast: model.apply({"params": p}, x, jax.random.key(2), forecast=forecast), static_argnums=1
  )
  out, _ = apply(params, 5)
  assert out.shape == (3, 17, 16) and bool(jnp.all(jnp.isfinite(out)))
  # the input frames' reconstruction does not depend on the forecast horizon
  np.testing.assert_allclose(apply(params, 0)[0], out[:, :12], rtol=1e-5, atol=1e-6)
  # the first frame is decoded from the latent alone: it is the same for every LSTM recurrence
  other = jax.tree_util.tree_map_with_path(
    lambda path, v: v + 1.0 if jax.tree_util.keystr(path).startswith("['OptimizedLSTMCell_0']") else v, params
  )  # the decoder's cell only, not the encoder's
  changed, _ = apply(other, 5)
  np.testing.assert_allclose(changed[:, 0], out[:, 0], rtol=1e-6)
  assert float(jnp.max(jnp.abs(changed[:, 1:] - out[:, 1:]))) > 1e-3


def test_tiny_training_run(data, tmp_path):
  model = goku.GOKU(goku.GOKUConfig(**TINY))
  # The "julia" schedule: warm-up, then a constant rate (no plateau within 40 steps); run 0 ends
  # after max_epochs epochs of 32 // 8 batches, run 1 at the step limit.
  cfg = TrainConfig(
    steps=40,
    batch_size=8,
    learning_rate=1e-2,
    warmup_steps=5,
    schedule="julia",
    max_epochs=5,
    eval_every=10,
    checkpoint_every=40,
  )
  trainer = Trainer(model, cfg)
  state, record = trainer.fit(
    data.z_train, data.z_val, data.w, [32, 64], [1, 1], workdir=tmp_path, progress=False
  )
  val = np.array([h["val_loss"] for h in record["history"]])  # (checks, runs)
  assert val.shape == (4, 2) and np.all(np.isfinite(val))
  assert np.all(val[-1] < 0.8 * val[0]), val
  np.testing.assert_array_equal(val[2:, 0], val[1, 0])  # run 0 frozen after its 20 steps
  assert list(np.asarray(state.schedule.stop_at)) == [20, 40]
  np.testing.assert_allclose(state.best_val, val.min(0), rtol=1e-6)
  assert record["skipped_steps"] == [0, 0]
  # Same seed, same start: both runs began from one set of parameters, with the forget-gate bias at 1.
  init = trainer.init([1, 1], jnp.zeros((2, 46, 16)))
  biases = [
    leaf
    for path, leaf in jax.tree_util.tree_leaves_with_path(init.params)
    if jax.tree_util.keystr(path).endswith("['hf']['bias']")
  ]
  assert biases and all(bool(jnp.all(b == 1.0)) for b in biases)
  np.testing.assert_array_equal(
    init.params["reconstructor"]["Dense_0"]["kernel"][0], init.params["reconstructor"]["Dense_0"]["kernel"][1]
  )
  # Resuming from the final checkpoint runs no step and restores the same best parameters; other runs
  # refuse the checkpoint.
  resumed, again = trainer.fit(
    data.z_train, data.z_val, data.w, [32, 64], [1, 1], workdir=tmp_path, progress=False
  )
  assert again["steps_run"] == 0 and again["history"] == record["history"]
  np.testing.assert_array_equal(resumed.best_val, state.best_val)
  with pytest.raises(ValueError, match="other runs"):
    trainer.fit(data.z_train, data.z_val, data.w, [32, 64], [1, 2], workdir=tmp_path, progress=False)
  exported = checkpoint.load_params(tmp_path / "best")
  np.testing.assert_array_equal(
    exported["reconstructor"]["Dense_0"]["kernel"], state.best_params["reconstructor"]["Dense_0"]["kernel"]
  )


def test_resume_with_another_configuration_names_the_field(data, tmp_path):
  model = goku.GOKU(goku.GOKUConfig(**TINY))
  cfg = TrainConfig(steps=2, batch_size=8, eval_every=1, checkpoint_every=1)
  fit = lambda config, **kw: Trainer(model, config).fit(
    data.z_train, data.z_val, data.w, [32], [1], workdir=tmp_path, progress=False, **kw
  )
  fit(cfg)
  changed = dataclasses.replace(cfg, learning_rate=1e-2)
  with pytest.raises(ConfigMismatchError, match=r"train\.learning_rate: 0\.005251 -> 0\.01\)"):
    fit(changed)
  assert fit(changed, force=True)[1]["steps_run"] == 0  # forced: resumes the finished run
