"""The HNU LSTM (seed 001): 3 LSTM layers of 64 units on a 1D trajectory, last step -> dropout -> dense.

Gate order and initialisation follow PyTorch's nn.LSTM, which the seed used.

Padding: sequences are left-padded; `length` says how many trailing steps are real. While a step is
padding, the carry is held at its initial zero, so the last step's output equals the unpadded run's.

The recurrence is written for throughput on CPU and GPU alike, as one "wavefront" loop over all layers:
at iteration s, layer l (0-based) processes time step t = s - l. Every layer's inputs at iteration s
are then states the previous iteration left, so the whole stack advances in T + L - 1 iterations
instead of L*T, each with one (B, H) x (H, 8H) product per layer (its hidden state times its own
recurrent weights next to the next layer's input weights). The first layer's input has one feature,
so its input projection is an outer product folded into the gate arithmetic.

A hand-written backward pass (custom VJP) runs the same wavefront in reverse. The forward pass stores
per step, instead of the gate activations, the gate derivatives the backward recurrence multiplies by
(already zero on padded steps), so the backward loop is two small products and a few multiplications:
  dz = [dc * g i (1-i), dc * c' f (1-f), dc * i (1-g^2), dh * tanh(c) o (1-o)]   ("slopes")
  dc = dc_next + dh * o (1 - tanh(c)^2),   dc_next = dc * f                       ("carries")
Every stored quantity has its own (B, S, H) buffer: XLA CPU writes a concatenation into a slice of
a big buffer several times slower than plain slices. The backward loop overwrites the slopes with dz
in place, and the weight gradients are formed after the loop as large products over all steps.
Only the last step of the top layer leaves the recurrence, which is all the model needs.
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


# The loops index time with dynamic slices of (B, S, H) buffers instead of lax.scan over xs: under the
# ensemble's vmap, scan would move the model axis behind time and transpose every buffer in memory.
# Keeping B ahead of S lets (B, S) be flattened for the weight-gradient products without disturbing
# the batch sharding.


def _at(a, t):
  return jax.lax.dynamic_index_in_dim(a, t, 1, keepdims=False)


def _put(a, x, t):
  # A scatter that promises an in-range index: vmap turns a dynamic_update_slice into a scatter whose
  # default out-of-range handling is a select over the whole buffer, which can cost XLA a full copy.
  return a.at[:, t].set(x, mode="promise_in_bounds", indices_are_sorted=True, unique_indices=True)


def _live(s, layer, start_B, steps):
  """(B, 1) mask: is layer's step t = s - layer a real (unpadded, in-range) step of each row?"""
  t = s - layer
  return ((t >= start_B) & (t < steps))[:, None]


def _forward(params, x_BxS, start_B, steps):
  """The wavefront forward pass over S = T + L - 1 iterations.

  params: (wo, u, b): per layer l its recurrent weights next to the next layer's input weights,
  wo[l] = [wh[l] | wx[l+1]] (H, 8H) (the top layer: wh only, (H, 4H)); u (4H,) the first layer's
  input weights (its input has one feature); b per layer (4H,).
  Returns the top layer's last hidden state and the backward pass's residuals: per layer 7 buffers
  (B, S, H): the hidden state entering each iteration, the 4 slopes and the 2 carries.
  """
  wo, u_G, b = params
  batch, iters = x_BxS.shape
  layers = len(wo)
  hidden = wo[0].shape[0]
  dtype = wo[0].dtype

  def step(s, carry):
    h, c, bufs = carry
    a = [h[l] @ wo[l] for l in range(layers)]
    h_new, c_new, new_bufs = [], [], []
    for l in range(layers):
      z = a[l][:, :4 * hidden] + b[l]
      z = z + (_at(x_BxS, s)[:, None] * u_G if l == 0 else a[l - 1][:, 4 * hidden:])
      i, f = _sigmoid(z[:, :hidden]), _sigmoid(z[:, hidden:2 * hidden])
      g, o = jnp.tanh(z[:, 2 * hidden:3 * hidden]), _sigmoid(z[:, 3 * hidden:])
      live = _live(s, l, start_B, steps)
      cl = jnp.where(live, f * c[l] + i * g, 0)
      tc = jnp.tanh(cl)
      h_new.append(o * tc)
      c_new.append(cl)
      stored = [h[l], g * i * (1 - i), c[l] * f * (1 - f), i * (1 - g * g), tc * o * (1 - o), o * (1 - tc * tc), f]
      stored = stored[:1] + [jnp.where(live, v, 0) for v in stored[1:]]
      new_bufs.append(tuple(_put(buf, v, s) for buf, v in zip(bufs[l], stored)))
    return h_new, c_new, new_bufs

  zeros = [jnp.zeros((batch, hidden), dtype)] * layers
  bufs = [tuple(jnp.zeros((batch, iters, hidden), dtype) for _ in range(7))] * layers
  h, _, bufs = jax.lax.fori_loop(0, iters, step, (zeros, zeros, bufs))
  return h[-1], (params, x_BxS, start_B, bufs)


@jax.custom_vjp
def _recurrence(params, x_BxS, start_B, steps_B):
  return _forward(params, x_BxS, start_B, steps_B.shape[1])[0]


def _recurrence_fwd(params, x_BxS, start_B, steps_B):
  return _forward(params, x_BxS, start_B, steps_B.shape[1])


def _backward(residuals, dh_BxH):
  params, x_BxS, start_B, bufs = residuals
  wo, u_G, b = params
  batch, iters = x_BxS.shape
  layers = len(wo)
  hidden = wo[0].shape[0]
  wot = [w.T for w in wo]

  def step(k, carry):
    s = iters - 1 - k
    dcf, dz_bufs = carry
    # dz of the previous iteration (s + 1) is read back from the buffers rather than carried: then
    # every read of a buffer precedes (feeds) this iteration's write into it, and XLA updates it in
    # place. At k = 0 the read is clamped and its result unused.
    nxt = jnp.minimum(s + 1, iters - 1)
    dz_next = [jnp.concatenate([_at(buf, nxt) for buf in dz_bufs[l]], -1) for l in range(layers)]
    new_dcf, new_bufs = [], []
    for l in range(layers):
      wide = dz_next[l] if l + 1 == layers else jnp.concatenate([dz_next[l], dz_next[l + 1]], -1)
      dh = wide @ wot[l]
      if l + 1 == layers:  # the output's gradient enters the top layer at its last step
        dh = jnp.where(k == 0, dh_BxH, dh)
      si, sf, sg, so = (_at(buf, s) for buf in dz_bufs[l])
      co, cf = _at(bufs[l][5], s), _at(bufs[l][6], s)
      dc = dcf[l] + dh * co
      new_dcf.append(dc * cf)
      new_bufs.append(tuple(_put(buf, v, s) for buf, v in zip(dz_bufs[l], (si * dc, sf * dc, sg * dc, so * dh))))
    return new_dcf, new_bufs

  dcf = [jnp.zeros((batch, hidden), dh_BxH.dtype)] * layers
  _, dz_bufs = jax.lax.fori_loop(0, iters, step, (dcf, [bl[1:5] for bl in bufs]))

  # Weight gradients, hoisted out of the loop: products over all iterations, one per (layer, gate) so
  # that no big buffer is concatenated. Flattening (B, S) first keeps XLA from transposing operands.
  rows = batch * iters
  flat = lambda a: a.reshape(rows, a.shape[-1])
  dz = [[flat(d) for d in dz_bufs[l]] for l in range(layers)]
  dwo = []
  for l in range(layers):
    h_RxH = flat(bufs[l][0])
    targets = dz[l] if l + 1 == layers else dz[l] + dz[l + 1]
    dwo.append(jnp.concatenate([jnp.einsum("rk,rn->kn", h_RxH, d) for d in targets], -1))
  x_R = x_BxS.reshape(rows)
  du_G = jnp.concatenate([x_R @ d for d in dz[0]])
  db = [jnp.concatenate([d.sum(0) for d in dz[l]]) for l in range(layers)]
  dx_BxS = sum(d @ u for d, u in zip(dz[0], jnp.split(u_G, 4))).reshape(batch, iters)
  return (dwo, du_G, db), dx_BxS, None, None


_recurrence.defvjp(_recurrence_fwd, _backward)


def _torch_uniform(bound):
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


class LSTM(nn.Module):
  """Input: x (B, T) standardised 1D trajectories, left-padded; length (B,) real steps per row."""

  config: LSTMConfig
  cpu_ensemble = "map"  # engine.over_models: its small recurrent products run fastest in a loop

  @nn.compact
  def __call__(self, x_BxT, length_B, *, train: bool):
    cfg = self.config
    hid, layers = cfg.hidden, cfg.layers
    init = _torch_uniform(hid ** -0.5)
    batch, steps = x_BxT.shape
    wx = [self.param("wx_0", init, (1, 4 * hid))]
    wx += [self.param(f"wx_{l}", init, (hid, 4 * hid)) for l in range(1, layers)]
    wh = [self.param(f"wh_{l}", init, (hid, 4 * hid)) for l in range(layers)]
    b = [self.param(f"b_{l}", init, (4 * hid,)) for l in range(layers)]
    wo = [jnp.concatenate([wh[l], wx[l + 1]], -1) for l in range(layers - 1)] + [wh[-1]]
    dtype = wh[0].dtype
    x_BxS = jnp.concatenate([x_BxT.astype(dtype), jnp.zeros((batch, layers - 1), dtype)], 1)
    # steps travels as the static shape of an empty array, custom_vjp's way of taking a static int
    last_BxH = _recurrence((wo, wx[0][0], b), x_BxS, steps - length_B, jnp.zeros((0, steps)))
    last_BxH = nn.Dropout(cfg.dropout, deterministic=not train)(last_BxH)
    head_init = _torch_uniform(hid ** -0.5)
    return nn.Dense(cfg.outputs, kernel_init=head_init, bias_init=head_init)(last_BxH)
