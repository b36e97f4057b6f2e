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
(already zero on padded steps), so the backward loop is two small products per layer and a few
multiplications:
  dz = [dc * g i (1-i), dc * c' f (1-f), dc * i (1-g^2), dh * tanh(c) o (1-o)]   ("slopes")
  dc = dc_next + dh * o (1 - tanh(c)^2),   dc_next = dc * f                       ("carries")
  dh = [dz_l | dz_l+1] wo^T,   dwo += h^T [dz_l | dz_l+1]
Every stored quantity has its own time-major buffer, (S, B, H) or, for h, (S, H, B), so that each step
reads and writes one contiguous block and the weight-gradient products take h^T as it lies. The weight
gradients are summed inside the backward loop: as products over all steps after it, with their long
contraction, they took longer than the loop itself.
In the first L-1 and last L-1 iterations some layers idle (not started, or finished); both passes
unroll those iterations and skip the idle layers' work (`_phases`).
Only the last step of the top layer leaves the recurrence, which is all the model needs.
"""

import dataclasses
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class LSTMConfig:
  hidden: int = 64
  layers: int = 3
  dropout: float = 0.2
  outputs: int = 1  # 1: regression of alpha (Task 1); 5: model classification (Task 2)


class Weights(NamedTuple):
  """The recurrence's parameters, and their gradient."""

  wo: list  # per layer l [wh[l] | wx[l+1]] (H, 8H): its recurrent weights next to the next layer's input
  # weights; the top layer's wh only (H, 4H)
  u: jax.Array  # (4H,) the first layer's input weights (its input has one feature)
  b: list  # per layer (4H,)


class Stored(NamedTuple):
  """One layer's buffers for the backward pass, one slot per iteration (zero where the layer is idle)."""

  hT: jax.Array  # the hidden state entering the iteration, transposed (S, H, B)
  slope_i: jax.Array  # dc -> dz_i: g i (1 - i)  (S, B, H), as the rest
  slope_f: jax.Array  # dc -> dz_f: c' f (1 - f)
  slope_g: jax.Array  # dc -> dz_g: i (1 - g^2)
  slope_o: jax.Array  # dh -> dz_o: tanh(c) o (1 - o)
  carry_h: jax.Array  # dh -> dc: o (1 - tanh(c)^2)
  carry_c: jax.Array  # dc -> dc_next: f


class Residuals(NamedTuple):
  """What the forward pass leaves the backward pass."""

  weights: Weights
  x_BxS: jax.Array
  stored: list[Stored]  # per layer


class ForwardCarry(NamedTuple):
  h: list  # per layer (B, H)
  c: list  # per layer (B, H)
  stored: list[Stored]  # per layer


class BackwardCarry(NamedTuple):
  dc_next: list  # per layer (B, H): dc * f, the cell state's gradient at the iteration before
  dz: list  # per layer (B, 4H): the gates' gradient at the iteration after; None: a known zero
  dwo: list  # per layer, as Weights.wo
  du: jax.Array  # as Weights.u
  db: list  # per layer, as Weights.b
  dx_SxB: jax.Array


class Phases(NamedTuple):
  ramp_up: list  # (s, the layers running) per unrolled iteration
  middle: tuple[int, int]  # [lo, hi): iterations in the loop, every layer running
  ramp_down: list  # (s, the layers running) per unrolled iteration


def _sigmoid(z):
  return 0.5 * jnp.tanh(0.5 * z) + 0.5  # exact identity; XLA's CPU tanh is cheaper than its logistic


def _at(a, t):
  return jax.lax.dynamic_index_in_dim(a, t, 0, keepdims=False)


def _put(a, x, t):
  return jax.lax.dynamic_update_index_in_dim(a, x, t, 0)


def _live(s, layer, start_B, steps):
  """(B, 1) mask: is layer's step t = s - layer a real (unpadded, in-range) step of each row?"""
  t = s - layer
  return ((t >= start_B) & (t < steps))[:, None]


def _phases(iters, layers, steps) -> Phases:
  """The wavefront's iterations in three runs: while the upper layers have not started, all layers
  running, after the lower layers have finished. The first and last are unrolled with the layers that
  run (`on`) known, so that their idle layers cost nothing: at T=10 they are a sixth of the work."""
  on = lambda s: tuple(l for l in range(layers) if 0 <= s - l < steps)
  middle = (layers - 1, max(layers - 1, steps))
  return Phases([(s, on(s)) for s in range(middle[0])], middle, [(s, on(s)) for s in range(middle[1], iters)])


def _started(s, layer):
  """Has layer's hidden state left its initial zero by iteration s? (Unknown, so yes, when s is traced.)"""
  return not isinstance(s, int) or s > layer


def _times(parts, w, split):
  """[x_0 | x_1] @ w (x_1 optional), w's rows split at `split`, as one product per part: concatenating
  the parts first costs a copy per step. A part that is None is a known zero and skipped; None if all
  are."""
  terms = [x @ w[rows] for x, rows in zip(parts, (slice(None, split), slice(split, None))) if x is not None]
  return sum(terms[1:], terms[0]) if terms else None


def _forward(params: Weights, x_BxS, start_B, steps):
  """The wavefront forward pass over S = T + L - 1 iterations.

  Returns the top layer's last hidden state and the backward pass's residuals.
  """
  wo, u_G, b = params
  batch, iters = x_BxS.shape
  layers = len(wo)
  hidden = wo[0].shape[0]
  dtype = wo[0].dtype
  x_SxB = x_BxS.T
  gates = 4 * hidden

  def step(s, carry: ForwardCarry, on=tuple(range(layers))):
    h, c, bufs = list(carry.h), list(carry.c), list(carry.stored)
    own, nxt = {}, {}  # per layer: its hidden state times its own gates' / the next layer's weights
    for l in range(layers):
      need = [l in on and _started(s, l), l + 1 in on and _started(s, l)]
      if all(need):
        a = h[l] @ wo[l]
        own[l], nxt[l] = a[:, :gates], a[:, gates:]
      elif need[0]:
        own[l] = h[l] @ wo[l][:, :gates]
      elif need[1]:
        nxt[l] = h[l] @ wo[l][:, gates:]
    h_new = list(h)
    for l in on:
      z = b[l] + own.get(l, 0)
      z = z + (_at(x_SxB, s)[:, None] * u_G if l == 0 else nxt.get(l - 1, 0))
      i, f = _sigmoid(z[:, :hidden]), _sigmoid(z[:, hidden : 2 * hidden])
      g, o = jnp.tanh(z[:, 2 * hidden : 3 * hidden]), _sigmoid(z[:, 3 * hidden :])
      live = _live(s, l, start_B, steps)
      cl = jnp.where(live, f * c[l] + i * g, 0)
      tc = jnp.tanh(cl)
      held = lambda v: jnp.where(live, v, 0)  # zero on padded steps
      new = Stored(
        hT=h[l].T,
        slope_i=held(g * i * (1 - i)),
        slope_f=held(c[l] * f * (1 - f)),
        slope_g=held(i * (1 - g * g)),
        slope_o=held(tc * o * (1 - o)),
        carry_h=held(o * (1 - tc * tc)),
        carry_c=held(f),
      )
      bufs[l] = jax.tree.map(lambda buf, v: _put(buf, v, s), bufs[l], new)
      h_new[l], c[l] = o * tc, cl
    for l in nxt.keys() - set(on):  # a finished layer's last output still feeds the next layer's product
      bufs[l] = bufs[l]._replace(hT=_put(bufs[l].hT, h[l].T, s))
    return ForwardCarry(h_new, c, bufs)

  zeros = [jnp.zeros((batch, hidden), dtype)] * layers
  h_slots = jnp.zeros((iters, hidden, batch), dtype)  # transposed: the weight gradients' products take h^T
  slots = jnp.zeros((iters, batch, hidden), dtype)
  carry = ForwardCarry(zeros, zeros, [Stored(h_slots, *[slots] * 6)] * layers)  # 4 slopes, 2 carries
  phases = _phases(iters, layers, steps)
  for s, on in phases.ramp_up:
    carry = step(s, carry, on)
  carry = jax.lax.fori_loop(*phases.middle, step, carry)
  for s, on in phases.ramp_down:
    carry = step(s, carry, on)
  return carry.h[-1], Residuals(params, x_BxS, carry.stored)


@jax.custom_vjp
def _recurrence(params, x_BxS, start_B, steps_B):
  return _forward(params, x_BxS, start_B, steps_B.shape[1])[0]


def _recurrence_fwd(params, x_BxS, start_B, steps_B):
  return _forward(params, x_BxS, start_B, steps_B.shape[1])


def _backward(residuals: Residuals, dh_BxH):
  x_BxS, bufs = residuals.x_BxS, residuals.stored
  wo, u_G, b = residuals.weights
  batch, iters = x_BxS.shape
  layers = len(wo)
  hidden = wo[0].shape[0]
  steps = iters - layers + 1
  gates = 4 * hidden
  x_SxB = x_BxS.T
  wot = [w.T for w in wo]
  dtype = dh_BxH.dtype

  # dz[l] is None where layer l did not run: a known zero, whose products are skipped (see _phases)
  def step(s, carry: BackwardCarry, on=tuple(range(layers))):
    dcf, dwo = list(carry.dc_next), list(carry.dwo)
    du_G, db, dx_SxB = carry.du, carry.db, carry.dx_SxB
    dz = [None] * layers
    for l in on:
      # dh = [dz_l | dz_l+1] (iteration s + 1's) times layer l's outgoing weights, transposed
      dh = _times(carry.dz[l : l + 2], wot[l], gates)
      if l + 1 == layers:  # the output's gradient enters the top layer at its last step
        dh = dh_BxH if dh is None else jnp.where(s == iters - 1, dh_BxH, dh)
      elif dh is None:
        dh = jnp.zeros((batch, hidden), dtype)
      st = bufs[l]
      dc = dcf[l] + dh * _at(st.carry_h, s)
      dcf[l] = dc * _at(st.carry_c, s)
      slopes = (st.slope_i, st.slope_f, st.slope_g, st.slope_o)
      dz[l] = jnp.concatenate([_at(v, s) * d for v, d in zip(slopes, (dc, dc, dc, dh))], -1)
    for l in range(layers):  # dwo += h^T [dz_l | dz_l+1], skipping known zeros
      kept = [
        (p, cols) for p, cols in zip(dz[l : l + 2], (slice(None, gates), slice(gates, None))) if p is not None
      ]
      if not kept or not _started(s, l):
        continue
      hT = _at(bufs[l].hT, s)
      if len(kept) == len(dz[l : l + 2]):  # products per part, as in _times
        dwo[l] = dwo[l] + jnp.concatenate([hT @ p for p, _ in kept], -1)
      else:
        dwo[l] = dwo[l].at[:, kept[0][1]].add(hT @ kept[0][0])
    if dz[0] is not None:
      du_G = du_G + _at(x_SxB, s) @ dz[0]
      dx_SxB = _put(dx_SxB, dz[0] @ u_G, s)
    db = [d if g is None else d + g.sum(0) for d, g in zip(db, dz)]
    return BackwardCarry(dcf, dz, dwo, du_G, db, dx_SxB)

  carry = BackwardCarry(
    dc_next=[jnp.zeros((batch, hidden), dtype)] * layers,
    dz=[None] * layers,
    dwo=[jnp.zeros_like(w) for w in wo],
    du=jnp.zeros_like(u_G),
    db=[jnp.zeros_like(v) for v in b],
    dx_SxB=jnp.zeros((iters, batch), dtype),
  )
  phases = _phases(iters, layers, steps)
  lo, hi = phases.middle
  for s, on in reversed(phases.ramp_down):
    carry = step(s, carry, on)
  dz = [jnp.zeros((batch, gates), dtype) if d is None else d for d in carry.dz]
  carry = jax.lax.fori_loop(0, hi - lo, lambda k, c: step(hi - 1 - k, c), carry._replace(dz=dz))
  for s, on in reversed(phases.ramp_up):
    carry = step(s, carry, on)
  return Weights(carry.dwo, carry.du, carry.db), carry.dx_SxB.T, None, None


_recurrence.defvjp(_recurrence_fwd, _backward)


def _torch_uniform(bound):
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


class LSTM(nn.Module):
  """Input: x (B, T) standardised 1D trajectories, left-padded; length (B,) real steps per row."""

  config: LSTMConfig

  @nn.compact
  def __call__(self, x_BxT, length_B, *, train: bool):
    cfg = self.config
    hid, layers = cfg.hidden, cfg.layers
    init = _torch_uniform(hid**-0.5)
    batch, steps = x_BxT.shape
    wx = [self.param("wx_0", init, (1, 4 * hid))]
    wx += [self.param(f"wx_{l}", init, (hid, 4 * hid)) for l in range(1, layers)]
    wh = [self.param(f"wh_{l}", init, (hid, 4 * hid)) for l in range(layers)]
    b = [self.param(f"b_{l}", init, (4 * hid,)) for l in range(layers)]
    wo = [jnp.concatenate([wh[l], wx[l + 1]], -1) for l in range(layers - 1)] + [wh[-1]]
    dtype = wh[0].dtype
    x_BxS = jnp.concatenate([x_BxT.astype(dtype), jnp.zeros((batch, layers - 1), dtype)], 1)
    # steps travels as the static shape of an empty array, custom_vjp's way of taking a static int
    last_BxH = _recurrence(Weights(wo, wx[0][0], b), x_BxS, steps - length_B, jnp.zeros((0, steps)))
    last_BxH = nn.Dropout(cfg.dropout, deterministic=not train)(last_BxH)
    head_init = _torch_uniform(hid**-0.5)
    return nn.Dense(cfg.outputs, kernel_init=head_init, bias_init=head_init)(last_BxH)
