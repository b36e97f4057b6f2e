"""The GOKU-UI paper's baselines (TMLR_GOKU-UI Experiments), with GOKU's call signature.

Both share GOKU's frame MLP and its reversed-sequence z0 LSTM as the encoder.
- LSTM autoencoder (deterministic): latent -> MLP -> u; the sequence u, LSTM(u), LSTM(LSTM(u)), ... of
  T + forecast frames (the LSTM fed its own output) -> per-frame residual MLP to the observations.
- Latent ODE (variational): mean and log-variance heads, z0 = MLP(sample), an MLP vector field
  (relu, 137 units) solved with adaptive Tsit5 at Julia's default tolerances; the KL weight ramps as
  1 - 0.999999^(step - 1). At evaluation (train=False) the posterior mean is decoded.
"""

import dataclasses

import diffrax
import flax.linen as nn
import jax
import jax.numpy as jnp

from andi_jax.goku.model import FluxLSTM, ResidualMLP, dense, fan_in_uniform


@dataclasses.dataclass(frozen=True)
class BaselineConfig:
  obs_dim: int = 784
  hidden: int = 200
  rnn_input: int = 128
  z0_rnn: int = 128
  z0_latent: int = 64
  latent_to_diffeq: int = 200
  ae_state: int = 42  # the LSTM autoencoder's recurrent latent
  ode_state: int = 6
  ode_hidden: int = 137
  dt: float = 0.05
  rtol: float = 1e-3
  atol: float = 1e-6
  max_steps: int = 1024  # per solve of at most 66 observations; a failed solve gives inf (step skipped)


MINI = dict(hidden=64, rnn_input=32, z0_rnn=64, z0_latent=16, latent_to_diffeq=64)


class _SummaryEncoder(nn.Module):
  """Frame MLP, then an LSTM over the reversed sequence; its last output summarises the first frame."""

  config: BaselineConfig

  @nn.compact
  def __call__(self, x_BxTxD):
    cfg = self.config
    f = ResidualMLP(cfg.hidden, cfg.rnn_input, out_act=True)(x_BxTxD)
    return FluxLSTM(cfg.z0_rnn)(f[:, ::-1])[:, -1]


class LSTMAutoencoder(nn.Module):
  config: BaselineConfig

  @nn.compact
  def __call__(self, x_BxTxD, key, forecast: int = 0, train: bool = True):
    del key, train
    cfg = self.config
    s = _SummaryEncoder(cfg)(x_BxTxD)
    u = dense(cfg.z0_latent)(s)
    u = jax.nn.mish(dense(cfg.ae_state)(jax.nn.mish(dense(cfg.latent_to_diffeq)(u))))
    steps = x_BxTxD.shape[1] + forecast
    cell = nn.OptimizedLSTMCell(
      cfg.ae_state, kernel_init=fan_in_uniform, recurrent_kernel_init=fan_in_uniform
    )
    c0 = self.param("c0", nn.initializers.zeros, (cfg.ae_state,))
    h0 = self.param("h0", nn.initializers.zeros, (cfg.ae_state,))

    def feed_back(cell, carry, _):
      state, inp = carry
      state, out = cell(state, inp)
      return (state, out), out

    rollout = nn.scan(feed_back, variable_broadcast="params", split_rngs={"params": False}, length=steps - 1)
    state = (jnp.broadcast_to(c0, u.shape), jnp.broadcast_to(h0, u.shape))
    _, h_TxBxS = rollout(cell, (state, u), None)
    # the first frame is decoded from the latent itself, the others from the LSTM's outputs
    z_BxTxS = jnp.concatenate([u[:, None], h_TxBxS.swapaxes(0, 1)], axis=1)
    return ResidualMLP(cfg.hidden, cfg.obs_dim)(z_BxTxS), {}


class _VectorField(nn.Module):
  """Flux's default (glorot) init: the Julia script builds this Chain without `init`."""

  config: BaselineConfig

  @nn.compact
  def __call__(self, z):
    cfg = self.config
    glorot = nn.initializers.glorot_uniform()
    h = nn.relu(nn.Dense(cfg.ode_hidden, kernel_init=glorot)(z))
    h = nn.relu(nn.Dense(cfg.ode_hidden, kernel_init=glorot)(h))
    return nn.Dense(cfg.ode_state, kernel_init=glorot)(h)


class LatentODE(nn.Module):
  config: BaselineConfig

  @nn.compact
  def __call__(self, x_BxTxD, key, forecast: int = 0, train: bool = True):
    cfg = self.config
    s = _SummaryEncoder(cfg)(x_BxTxD)
    mu, logvar = dense(cfg.z0_latent, name="mu")(s), dense(cfg.z0_latent, name="logvar")(s)
    latent = mu + jnp.exp(0.5 * logvar) * jax.random.normal(key, mu.shape) if train else mu
    z0 = jax.nn.mish(dense(cfg.ode_state)(jax.nn.mish(dense(cfg.latent_to_diffeq)(latent))))
    kl = 0.5 * jnp.mean(jnp.sum(jnp.exp(logvar) + mu**2 - 1.0 - logvar, -1))

    # The vector field is an unbound module whose parameters travel through diffrax's args.
    field = _VectorField(cfg)
    vf_params = self.param("vector_field", lambda k: field.init(k, jnp.zeros((cfg.ode_state,)))["params"])
    rhs = lambda t, z, args: field.apply({"params": args}, z)
    points = x_BxTxD.shape[1] + forecast
    ts = jnp.linspace(0.0, (points - 1) * cfg.dt, points)

    def solve(z):
      sol = diffrax.diffeqsolve(
        diffrax.ODETerm(rhs),
        diffrax.Tsit5(),
        0.0,
        ts[-1],
        cfg.dt,
        z,
        args=vf_params,
        saveat=diffrax.SaveAt(ts=ts),
        max_steps=cfg.max_steps,
        throw=False,
        # every step stored for the backward pass (a few kB) instead of recomputed: 30% faster
        adjoint=diffrax.RecursiveCheckpointAdjoint(checkpoints=cfg.max_steps),
        stepsize_controller=diffrax.PIDController(rtol=cfg.rtol, atol=cfg.atol),
      )
      return sol.ys

    # the solve has no parameters of its own: init skips it (and its compile)
    z = jnp.zeros(z0.shape[:1] + ts.shape + z0.shape[1:]) if self.is_initializing() else jax.vmap(solve)(z0)
    return ResidualMLP(cfg.hidden, cfg.obs_dim)(z), {"kl": kl}
