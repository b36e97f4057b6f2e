"""The HNU LSTM (seed 001): 3 LSTM layers of 64 units on a 1D trajectory, last step -> dropout -> dense.

The recurrence is written for throughput on CPU and GPU alike:
- each layer's input projection is hoisted out of the time loop into one large matrix product;
- the loop body is one (B, H) x (H, 4H) product plus fused elementwise gate arithmetic;
- a hand-written backward pass (custom VJP) keeps only the recurrent product inside the reverse loop
  and computes the recurrent weight gradient afterwards as one large product over all steps.
Gate order and initialisation follow PyTorch's nn.LSTM, which the seed used.

Padding: sequences are left-padded; `length` says how many trailing steps are real. While a step is
padding, the carry is held at its initial zero, so the last step's output equals the unpadded run's.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class LSTMConfig:
  hidden: int = 64
  layers: int = 3
  dropout: float = 0.2
  outputs: int = 1  # 1: regression of alpha (Task 1); 5: model classification (Task 2)


def _sigmoid(z):
  return 0.5 * jnp.tanh(0.5 * z) + 0.5  # exact identity; XLA's CPU tanh is cheaper than its logistic


def _gates(z_BxG):
  i, f, g, o = jnp.split(z_BxG, 4, axis=-1)
  return _sigmoid(i), _sigmoid(f), jnp.tanh(g), _sigmoid(o)


def _at(a, t):
  return jax.lax.dynamic_index_in_dim(a, t, 0, keepdims=False)


def _put(a, x, t):
  return jax.lax.dynamic_update_index_in_dim(a, x, t, 0)


# The loops below index time with dynamic slices instead of lax.scan over xs: under the ensemble's
# vmap, scan would move the model axis behind time and transpose every (T, B, 4H) array in memory.


def _forward(xproj_TxBxG, wh_HxG, mask_TxB):
  """Runs the recurrence; returns hidden states and what the backward pass needs."""
  steps, batch, four_h = xproj_TxBxG.shape
  zeros_BxH = jnp.zeros((batch, four_h // 4), xproj_TxBxG.dtype)

  def step(t, carry):
    h, c, h_TxBxH, c_TxBxH, gates_TxBxG = carry
    m = _at(mask_TxB, t)[:, None]
    i, f, g, o = _gates(_at(xproj_TxBxG, t) + h @ wh_HxG)
    c_new = f * c + i * g
    h_new = o * jnp.tanh(c_new)
    h_new, c_new = jnp.where(m, h_new, h), jnp.where(m, c_new, c)
    return (h_new, c_new, _put(h_TxBxH, h_new, t), _put(c_TxBxH, c_new, t),
            _put(gates_TxBxG, jnp.concatenate([i, f, g, o], -1), t))

  buffers = (jnp.zeros((steps, batch, four_h // 4)),) * 2 + (jnp.zeros_like(xproj_TxBxG),)
  _, _, h_TxBxH, c_TxBxH, gates_TxBxG = jax.lax.fori_loop(0, steps, step, (zeros_BxH, zeros_BxH) + buffers)
  return h_TxBxH, (h_TxBxH, c_TxBxH, gates_TxBxG, wh_HxG, mask_TxB)


@jax.custom_vjp
def lstm_recurrence(xproj_TxBxG, wh_HxG, mask_TxB):
  """Hidden states (T, B, H) of one LSTM layer given its projected inputs x W_x + b (T, B, 4H)."""
  return _forward(xproj_TxBxG, wh_HxG, mask_TxB)[0]


def _backward(residuals, dh_TxBxH):
  h_TxBxH, c_TxBxH, gates_TxBxG, wh_HxG, mask_TxB = residuals
  steps = h_TxBxH.shape[0]
  wh_t = wh_HxG.T

  def step(k, carry):
    t = steps - 1 - k
    dh_next, dc_next, dz_TxBxG = carry
    i, f, g, o = jnp.split(_at(gates_TxBxG, t), 4, axis=-1)
    c_prev = _at(c_TxBxH, jnp.maximum(t - 1, 0)) * (t > 0)
    dh = _at(dh_TxBxH, t) + dh_next
    tc = jnp.tanh(_at(c_TxBxH, t))
    dc = dc_next + dh * o * (1 - tc * tc)
    dz = jnp.concatenate(
        [dc * g * i * (1 - i), dc * c_prev * f * (1 - f), dc * i * (1 - g * g), dh * tc * o * (1 - o)], -1)
    m = _at(mask_TxB, t)[:, None]
    dz = jnp.where(m, dz, 0)
    # A padded step passed the carry through unchanged, so its gradient passes through too.
    dh_prev = jnp.where(m, dz @ wh_t, dh)
    dc_prev = jnp.where(m, dc * f, dc_next)
    return dh_prev, dc_prev, _put(dz_TxBxG, dz, t)

  zeros_BxH = jnp.zeros_like(dh_TxBxH[0])
  _, _, dz_TxBxG = jax.lax.fori_loop(0, steps, step, (zeros_BxH, zeros_BxH, jnp.zeros_like(gates_TxBxG)))
  # The recurrent weight gradient, hoisted out of the loop: one product over all steps.
  dwh_HxG = jnp.einsum("tbh,tbg->hg", h_TxBxH[:-1], dz_TxBxG[1:])
  return dz_TxBxG, dwh_HxG, jnp.zeros_like(mask_TxB)


lstm_recurrence.defvjp(_forward, _backward)


def _torch_uniform(bound):
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


def left_pad_mask(length_B, steps):
  """(T, B) mask of real steps for left-padded sequences of the given lengths."""
  return (jnp.arange(steps)[:, None] >= steps - length_B[None, :]).astype(jnp.float32)


class LSTM(nn.Module):
  """Input: x (B, T) standardised 1D trajectories, left-padded; length (B,) real steps per row."""

  config: LSTMConfig

  @nn.compact
  def __call__(self, x_BxT, length_B, *, train: bool):
    cfg = self.config
    init = _torch_uniform(cfg.hidden ** -0.5)
    steps = x_BxT.shape[1]
    mask_TxB = left_pad_mask(length_B, steps)
    h_TxBxF = x_BxT.T[:, :, None]
    for layer in range(cfg.layers):
      wx = self.param(f"wx_{layer}", init, (h_TxBxF.shape[-1], 4 * cfg.hidden))
      wh = self.param(f"wh_{layer}", init, (cfg.hidden, 4 * cfg.hidden))
      b = self.param(f"b_{layer}", init, (4 * cfg.hidden,))
      h_TxBxF = lstm_recurrence(h_TxBxF @ wx + b, wh, mask_TxB)
    last_BxH = nn.Dropout(cfg.dropout, deterministic=not train)(h_TxBxF[-1])
    head_init = _torch_uniform(cfg.hidden ** -0.5)
    return nn.Dense(cfg.outputs, kernel_init=head_init, bias_init=head_init)(last_BxH)
