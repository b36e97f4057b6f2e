"""GOKU-UI and GOKU-basic (Abrevaya et al., TMLR 2024; GokuNets.jl), with a stochastic Stuart-Landau core.

Encoder: a per-frame residual MLP, then
  - z0: an LSTM over the reversed window (GOKU-UI) or two stacked ReLU RNNs (GOKU-basic);
  - theta: a bidirectional LSTM with per-channel attention over time (GOKU-UI) or two stacked LSTMs per
    direction whose last outputs are concatenated (GOKU-basic). As in the Julia code, the backward half
    is concatenated in its processing order, not realigned in time.
Decoder: MLPs to the initial state (6) and to the 15 SDE parameters (sigmoid, then the model's wide
scales), the SDE solve (noise on in training and at test), then a per-frame residual MLP to the
observations.

Multiple shooting: a sequence of T = n (L - 1) + 1 frames is cut into n windows of L frames that share
one boundary frame each. Every window gets its own z0 and is integrated from t = 0; theta is inferred
once from the whole sequence and shared. The joined path takes the first L - 1 points of each window and
all points of the last. A forecast integrates every window F points further, so the last window carries
the forecast. Continuity loss: squared latent mismatch at the window boundaries.

All Flax Dense layers use U(+-1/sqrt(fan_in)) weights and zero biases (Flux kaiming_uniform with gain
1/sqrt(3)); LSTMs have Flux's forget-gate bias of 1 and trainable initial states (see `init_params`).
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from andi_jax.goku import stuart_landau as sl


@dataclasses.dataclass(frozen=True)
class GOKUConfig:
  obs_dim: int = 784
  hidden: int = 200  # width of the frame MLPs and the decoder MLPs' hidden layer
  rnn_input: int = 128  # features per frame entering the recurrent encoders
  z0_rnn: int = 128  # the z0 LSTM (GOKU-UI)
  rnn_output: int = 64  # theta LSTMs per direction; the z0 RNNs of GOKU-basic
  z0_latent: int = 64
  theta_latent: int = 128
  latent_to_diffeq: int = 200
  attention: bool = True  # GOKU-UI's encoder; False: GOKU-basic's
  multiple_shooting: bool = True
  win_len: int = 10
  sde: sl.SDEConfig = sl.SDEConfig()


# A CPU-sized model (174k parameters with 784 observation dimensions against 0.82 M).
MINI = dict(
  hidden=64, rnn_input=32, z0_rnn=64, rnn_output=32, z0_latent=16, theta_latent=32, latent_to_diffeq=64
)

fan_in_uniform = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")


def dense(features, name=None):
  return nn.Dense(features, kernel_init=fan_in_uniform, name=name)


class ResidualMLP(nn.Module):
  """Dense -> mish, two residual Dense -> mish blocks, Dense -> `out_act`; applied per frame."""

  hidden: int
  out: int
  out_act: bool = False

  @nn.compact
  def __call__(self, x):
    h = jax.nn.mish(dense(self.hidden)(x))
    for _ in range(2):
      h = h + jax.nn.mish(dense(self.hidden)(h))
    y = dense(self.out)(h)
    return jax.nn.mish(y) if self.out_act else y


class FluxLSTM(nn.Module):
  """LSTM with a trainable initial state; (B, T, F) -> all outputs (B, T, H)."""

  features: int

  @nn.compact
  def __call__(self, x_BxTxF):
    cell = nn.OptimizedLSTMCell(
      self.features, kernel_init=fan_in_uniform, recurrent_kernel_init=fan_in_uniform
    )
    c0 = self.param("c0", nn.initializers.zeros, (self.features,))
    h0 = self.param("h0", nn.initializers.zeros, (self.features,))
    batch = x_BxTxF.shape[:1] + (self.features,)
    carry = (jnp.broadcast_to(c0, batch), jnp.broadcast_to(h0, batch))
    return nn.RNN(cell)(x_BxTxF, initial_carry=carry)


class FluxRNN(nn.Module):
  """ReLU RNN with a trainable initial state; (B, T, F) -> (B, T, H)."""

  features: int

  @nn.compact
  def __call__(self, x_BxTxF):
    cell = nn.SimpleCell(
      self.features, activation_fn=nn.relu, kernel_init=fan_in_uniform, recurrent_kernel_init=fan_in_uniform
    )
    h0 = self.param("h0", nn.initializers.zeros, (self.features,))
    carry = jnp.broadcast_to(h0, x_BxTxF.shape[:1] + (self.features,))
    return nn.RNN(cell)(x_BxTxF, initial_carry=carry)


def init_params(model: nn.Module, key, x_BxTxD):
  """model.init, then Flux's LSTM forget-gate bias of 1 (flax initialises all gate biases alike)."""
  params = model.init({"params": key}, x_BxTxD, jax.random.key(0))["params"]

  def forget_one(path, leaf):
    names = [getattr(k, "key", None) for k in path]
    return jnp.ones_like(leaf) if names[-2:] == ["hf", "bias"] else leaf

  return jax.tree_util.tree_map_with_path(forget_one, params)


def n_windows(seq_len: int, win_len: int) -> int:
  if (seq_len - 1) % (win_len - 1):
    raise ValueError(
      f"a sequence of {seq_len} frames is not a whole number of windows of {win_len} "
      "sharing their boundary frames"
    )
  return (seq_len - 1) // (win_len - 1)


def join_windows(z_BxWxPxS, win_len: int):
  """(B, W, P, S) window paths -> (B, (W - 1)(L - 1) + P, S): the later window gives each boundary."""
  head = z_BxWxPxS[:, :-1, : win_len - 1]
  head = head.reshape(head.shape[0], -1, head.shape[-1])
  return jnp.concatenate([head, z_BxWxPxS[:, -1]], axis=1)


def continuity_loss(z_BxWxPxS, win_len: int):
  """Mean squared mismatch between each window's boundary point and the next window's start."""
  return jnp.mean((z_BxWxPxS[:, :-1, win_len - 1] - z_BxWxPxS[:, 1:, 0]) ** 2)


class Encoder(nn.Module):
  config: GOKUConfig

  @nn.compact
  def __call__(self, x_BxTxD):
    """-> z0 latents (B, W, z0_latent) per shooting window, theta latent (B, theta_latent)."""
    cfg = self.config
    f = ResidualMLP(cfg.hidden, cfg.rnn_input, out_act=True)(x_BxTxD)
    rev = f[:, ::-1]
    if cfg.attention:
      h = jnp.concatenate([FluxLSTM(cfg.rnn_output)(f), FluxLSTM(cfg.rnn_output)(rev)], -1)
      # Flux's default glorot init here (the only Dense the Julia code leaves at its default)
      scores = nn.Dense(2 * cfg.rnn_output, kernel_init=nn.initializers.glorot_uniform(), name="attention")(h)
      weights = nn.softmax(scores, axis=1)  # over time, separately per channel
      summary = jnp.sum(weights * h, axis=1)
    else:
      fwd = FluxLSTM(cfg.rnn_output)(FluxLSTM(cfg.rnn_output)(f))
      bwd = FluxLSTM(cfg.rnn_output)(FluxLSTM(cfg.rnn_output)(rev))
      summary = jnp.concatenate([fwd[:, -1], bwd[:, -1]], -1)
    theta = dense(cfg.theta_latent, name="theta_head")(summary)

    batch, steps, feat = f.shape
    if cfg.multiple_shooting:
      windows = n_windows(steps, cfg.win_len)
      idx = np.arange(windows)[:, None] * (cfg.win_len - 1) + np.arange(cfg.win_len)
      seg = f[:, idx].reshape(batch * windows, cfg.win_len, feat)
    else:
      windows, seg = 1, f
    seg = seg[:, ::-1]  # z0 is read from the end of the reversed window, i.e. its first frame
    if cfg.attention:
      s = FluxLSTM(cfg.z0_rnn)(seg)[:, -1]
    else:
      s = FluxRNN(cfg.rnn_output)(FluxRNN(cfg.rnn_output)(seg))[:, -1]
    z0 = dense(cfg.z0_latent, name="z0_head")(s)
    return z0.reshape(batch, windows, -1), theta


class GOKU(nn.Module):
  """x (B, T, D) -> (x_hat (B, T + forecast, D), {"continuity": scalar (0 for single shooting)}).

  `key` draws the SDE noise; `train` is unused (the noise stays on, as in the Julia code).
  """

  config: GOKUConfig

  def setup(self):
    cfg = self.config
    self.encoder = Encoder(cfg)
    self.z0_decoder = nn.Sequential([dense(cfg.latent_to_diffeq), jax.nn.mish, dense(sl.STATE)])
    self.theta_decoder = nn.Sequential(
      [dense(cfg.latent_to_diffeq), jax.nn.mish, dense(sl.N_PARAMS), nn.sigmoid]
    )
    self.reconstructor = ResidualMLP(cfg.hidden, cfg.obs_dim)

  def latent(self, x_BxTxD, key, forecast: int = 0):
    """Window paths (B, W, P, 6) and the decoded parameters p (B, 15) in [0, 1]."""
    cfg = self.config
    z0_latent, theta_latent = self.encoder(x_BxTxD)
    z0, p = self.z0_decoder(z0_latent), self.theta_decoder(theta_latent)
    batch, windows = z0.shape[:2]
    points = (cfg.win_len if cfg.multiple_shooting else x_BxTxD.shape[1]) + forecast
    if self.is_initializing():  # the solve has no parameters: init skips it and its compilation
      return jnp.zeros((batch, windows, points, sl.STATE), z0.dtype), p
    solve = lambda z, q, k: sl.solve(z, sl.model_scale(q), k, points, cfg.sde)
    keys = jax.random.split(key, (batch, windows))
    paths = jax.vmap(jax.vmap(solve, (0, None, 0)))(z0, p, keys)  # windows share their sample's p
    return paths, p

  def __call__(self, x_BxTxD, key, forecast: int = 0, train: bool = True):
    del train
    cfg = self.config
    paths, _ = self.latent(x_BxTxD, key, forecast)
    if cfg.multiple_shooting:
      z = join_windows(paths, cfg.win_len)
      cont = continuity_loss(paths, cfg.win_len)
    else:
      z, cont = paths[:, 0], jnp.zeros(())
    return self.reconstructor(z), {"continuity": cont}
