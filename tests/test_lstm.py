import jax
import jax.numpy as jnp
import numpy as np
import pytest

from andi_jax.models.lstm import LSTM, LSTMConfig

CFG = LSTMConfig(hidden=8, layers=3, dropout=0.2, outputs=2)


def _reference(params, x_BxT, length_B, cfg=CFG):
  """Plain lax.scan LSTM, PyTorch gate order; padded steps hold the carry. Dropout off."""
  steps = x_BxT.shape[1]
  mask_TxB = jnp.arange(steps)[:, None] >= steps - length_B[None, :]
  seq = x_BxT.T[:, :, None]
  for l in range(cfg.layers):
    wx, wh, b = params[f"wx_{l}"], params[f"wh_{l}"], params[f"b_{l}"]

    def cell(carry, inp, wx=wx, wh=wh, b=b):
      h, c = carry
      x, m = inp
      z = x @ wx + h @ wh + b
      i, f, g, o = jnp.split(z, 4, -1)
      c2 = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
      h2 = jax.nn.sigmoid(o) * jnp.tanh(c2)
      h2, c2 = jnp.where(m[:, None], h2, h), jnp.where(m[:, None], c2, c)
      return (h2, c2), h2

    zeros = jnp.zeros((x_BxT.shape[0], cfg.hidden), seq.dtype)
    _, seq = jax.lax.scan(cell, (zeros, zeros), (seq, mask_TxB))
  dense = params["Dense_0"]
  return seq[-1] @ dense["kernel"] + dense["bias"]


def _setup(dtype, batch=6, steps=7, seed=0):
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.standard_normal((batch, steps)), dtype)
  model = LSTM(CFG)
  params = model.init({"params": jax.random.PRNGKey(seed)}, x, jnp.full(batch, steps), train=False)["params"]
  params = jax.tree.map(lambda p: p.astype(dtype), params)
  return model, params, x


def _loss_fns(model, x, length, target):
  def ours(p):
    return jnp.sum((model.apply({"params": p}, x, length, train=False) - target) ** 2)

  def ref(p):
    return jnp.sum((_reference(p, x, length) - target) ** 2)

  return ours, ref


@pytest.mark.parametrize("masked", [False, True])
def test_gradients_match_reference_float64(masked):
  with jax.enable_x64(True):
    model, params, x = _setup(jnp.float64)
    batch, steps = x.shape
    length = jnp.array([steps, 1, 3, steps, 5, 2]) if masked else jnp.full(batch, steps)
    if masked:  # left padding: the padded entries hold garbage that must not matter
      x = jnp.where(jnp.arange(steps)[None, :] >= steps - length[:, None], x, 123.0)
    target = jnp.ones((batch, CFG.outputs), jnp.float64)
    ours, ref = _loss_fns(model, x, length, target)
    np.testing.assert_allclose(jax.jit(ours)(params), jax.jit(ref)(params), rtol=1e-12)
    g_ours, g_ref = jax.jit(jax.grad(ours))(params), jax.jit(jax.grad(ref))(params)
    for a, b in zip(jax.tree.leaves(g_ours), jax.tree.leaves(g_ref)):
      assert a.dtype == jnp.float64
      np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_gradients_match_reference_float32_masked():
  model, params, x = _setup(jnp.float32, seed=1)
  length = jnp.array([7, 2, 4, 6, 1, 7])
  target = jnp.zeros((6, CFG.outputs))
  ours, ref = _loss_fns(model, x, length, target)
  for a, b in zip(
    jax.tree.leaves(jax.jit(jax.grad(ours))(params)), jax.tree.leaves(jax.jit(jax.grad(ref))(params))
  ):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_padding_invariance():
  model, params, x = _setup(jnp.float32, batch=3, steps=9, seed=2)
  lengths = [9, 4, 1]
  padded = np.full(x.shape, 7.0, np.float32)  # garbage padding
  for r, n in enumerate(lengths):
    padded[r, 9 - n :] = x[r, :n]
  apply = jax.jit(lambda x, length: model.apply({"params": params}, x, length, train=False))
  out = apply(jnp.asarray(padded), jnp.array(lengths))
  for r, n in enumerate(lengths):
    alone = apply(x[r : r + 1, :n], jnp.array([n]))
    np.testing.assert_allclose(out[r], alone[0], rtol=1e-5, atol=1e-6)


def test_vmap_over_models_and_jit():
  model = LSTM(CFG)
  models, batch, steps = 3, 5, 6
  x = jax.random.normal(jax.random.PRNGKey(0), (models, batch, steps))
  length = jnp.tile(jnp.array([6, 6, 3, 1, 4]), (models, 1))
  keys = jax.random.split(jax.random.PRNGKey(1), models)
  params = jax.vmap(lambda k: model.init({"params": k}, x[0], length[0], train=False)["params"])(keys)

  def loss(p, x, length, key):
    out = model.apply({"params": p}, x, length, train=True, rngs={"dropout": key})
    return jnp.mean(out**2), out

  def grads(p, x, length, key):
    return jax.grad(loss, has_aux=True)(p, x, length, key)

  g_jit, out_jit = jax.jit(jax.vmap(grads))(params, x, length, keys)
  assert out_jit.shape == (models, batch, CFG.outputs)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(g_jit))
  # one model's slice equals running that model alone, un-jitted (op by op)
  m = 1
  p_m = jax.tree.map(lambda a: a[m], params)
  g_m, out_m = grads(p_m, x[m], length[m], keys[m])
  np.testing.assert_allclose(out_jit[m], out_m, rtol=1e-5, atol=1e-6)
  for a, b in zip(jax.tree.leaves(g_jit), jax.tree.leaves(g_m)):
    np.testing.assert_allclose(a[m], b, rtol=1e-4, atol=1e-6)
