"""Throughput measurements: after compilation, synchronised, median over repeats."""

import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from andi_jax.models import build_model
from andi_jax.models.lstm import LSTMConfig
from andi_jax.train.engine import Ensemble, TrainConfig


def interleaved_seconds(fns, repeats: int, calls_per_turn: int = 1, warm_up: bool = True) -> list[float]:
  """Median seconds of each call, synchronised (jax.block_until_ready on what it returns), the fns taken
  in turn within every repeat, so that the drift of a shared machine weighs on all of them alike. Each fn
  is compiled and warmed up first (warm_up=False: not, for calls that compile nothing).

  calls_per_turn > 1: each turn times that many calls of one fn after one untimed call. For calls into
  different runtimes (PyTorch, XLA): taken call by call in turn, each runtime's idle thread pool slowed
  the other."""
  if warm_up:
    for fn in fns:
      jax.block_until_ready(fn())
  times = [[] for _ in fns]
  for _ in range(repeats):
    for fn, t in zip(fns, times):
      if calls_per_turn > 1:
        jax.block_until_ready(fn())
      for _ in range(calls_per_turn):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        t.append(time.perf_counter() - start)
  return [float(np.median(t)) for t in times]


def median_seconds(fn, repeats: int, warm_up: bool = True) -> float:
  """Median seconds of `repeats` synchronised calls of fn, after an untimed one (warm_up)."""
  return interleaved_seconds([fn], repeats, warm_up=warm_up)[0]


def _walks(n, length, seed=0):
  x = np.cumsum(np.random.default_rng(seed).normal(size=(n, length)), axis=1)
  return ((x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)).astype(np.float32)


def walks_and_alphas(n, length):
  """n standardised random walks and n alpha targets in the challenge's range: arrays to time steps on."""
  return _walks(n, length), np.random.default_rng(1).uniform(0.05, 2, n).astype(np.float32)


def _batch_arrays(ens: Ensemble, n_models: int, batch: int, length: int):
  x = np.broadcast_to(_walks(batch, length), (n_models, batch, length))
  return jax.device_put(
    (
      x,
      np.full((n_models, batch), length, np.int32),
      np.random.default_rng(1).uniform(0.05, 2, (n_models, batch)).astype(np.float32),
    ),
    ens.batch_sharding,
  )


def ensemble_step(
  model_name: str, length: int, folds: int, batch: int, ensemble: str = "auto", model_config=None
):
  """One training step of a `folds`-model ensemble on fixed arrays, as a call (engine.over_models' mode)."""
  model, _ = build_model(model_name, model_config)
  ens = Ensemble(model, TrainConfig(batch_size=batch, ensemble=ensemble))
  state = ens.init(folds, length)
  arrays = _batch_arrays(ens, folds, batch, length)
  keys = jax.random.split(jax.random.key(0), folds)

  def step():
    nonlocal state
    state, loss = ens.train_step(state, *arrays, keys)
    return loss

  return step


def one_and_sequential_steps(model_name: str, length: int, folds: int, batch: int, model_config=None):
  """Two calls sharing one compilation: one model's step alone, and `folds` separate one-model states
  whose jitted steps are called one after another from Python (the seed's loop)."""
  model, _ = build_model(model_name, model_config)
  ens = Ensemble(model, TrainConfig(batch_size=batch))
  states = [ens.init(1, length) for _ in range(folds)]
  arrays = _batch_arrays(ens, 1, batch, length)
  keys = jax.random.split(jax.random.key(0), 1)

  def run(models):
    losses = []
    for i in models:
      states[i], loss = ens.train_step(states[i], *arrays, keys)
      losses.append(loss)
    return losses

  return lambda: run([0]), lambda: run(range(folds))


def lstm_products_step(length: int, folds: int, batch: int):
  """The matrix products of the LSTM ensemble's training step (models/lstm.py) and nothing else, as a
  call: per model and time step, each layer's h x [wh | wx_next] forward, then [dz | dz_next] x wo^T
  and h^T x [dz | dz_next] backward, at the step's shapes on its devices (rows split, the models in a
  lax.map, as the engine runs them). A tanh per layer keeps the values bounded. Without the gate
  arithmetic, the stores, the loss and the optimizer, its time is a floor under any step that runs
  these products through XLA: the ceiling on what the LSTM step can gain."""
  cfg = LSTMConfig()
  hidden, layers, gates = cfg.hidden, cfg.layers, 4 * cfg.hidden
  ens = Ensemble(build_model("lstm")[0], TrainConfig(batch_size=batch))
  rows = batch // ens.mesh.size
  rng = np.random.default_rng(0)
  bound = hidden**-0.5  # the model's (PyTorch's) initialisation range
  wo = [
    jnp.asarray(
      rng.uniform(-bound, bound, (folds, hidden, 2 * gates if l + 1 < layers else gates)), jnp.float32
    )
    for l in range(layers)
  ]

  def one_model(wo):
    def forward(t, h):  # every column of each product feeds the next step, so none is dropped
      return [jnp.tanh(sum(jnp.split(h[l] @ w, w.shape[1] // hidden, 1))) for l, w in enumerate(wo)]

    h = jax.lax.fori_loop(0, length, forward, [jnp.ones((rows, hidden))] * layers)
    hT = [v.T for v in h]

    def backward(t, carry):
      dz, dwo = carry
      dh = [
        sum(
          d @ w[:, k * gates : (k + 1) * gates].T
          for k, d in enumerate(dz[l : l + 2])
          if k * gates < w.shape[1]
        )
        for l, w in enumerate(wo)
      ]
      dwo = [
        dw + jnp.concatenate([hT[l] @ d for d in dz[l : l + 1 + (w.shape[1] > gates)]], 1)
        for l, (dw, w) in enumerate(zip(dwo, wo))
      ]
      return [jnp.tile(jnp.tanh(d), 4) for d in dh], dwo

    dz = [jnp.ones((rows, gates))] * layers
    return jax.lax.fori_loop(0, length, backward, (dz, [jnp.zeros_like(w) for w in wo]))[1]

  def local(wo):
    return jax.lax.pmean(jax.lax.map(one_model, wo), "batch")

  step = jax.jit(jax.shard_map(local, mesh=ens.mesh, in_specs=P(), out_specs=P(), check_vma=False))
  return lambda: step(wo)


def onthefly_step(model_name: str, width: int, folds: int, batch: int, sampler):
  """As ensemble_step, with each step's batches of `width` simulated inside it by `sampler` (recipe at
  T=1000), fresh each call."""
  model, _ = build_model(model_name)
  ens = Ensemble(model, TrainConfig(batch_size=batch))
  state = ens.init(folds, width)
  step_fn = ens.sampled_step(sampler)
  keys = jax.random.split(jax.random.key(0), folds)
  calls = iter(range(1 << 30))

  def step():
    nonlocal state
    data_keys = jax.random.split(jax.random.key(next(calls)), folds)
    state, loss = step_fn(state, data_keys, keys, width=width)
    return loss

  return step


def train_throughput(
  model_name: str,
  length: int,
  folds: int,
  batch: int,
  ensemble: str = "auto",
  repeats: int = 10,
  model_config=None,
) -> float:
  """Training trajectories per second summed over the ensemble.

  ensemble: "vmap", "map" or "auto": the folds train as one ensemble step (engine.over_models);
  "sequential": folds one-model states stepped one after another, as the seed's loop does.
  """
  if ensemble == "sequential":
    step = one_and_sequential_steps(model_name, length, folds, batch, model_config)[1]
  else:
    step = ensemble_step(model_name, length, folds, batch, ensemble, model_config)
  return folds * batch / median_seconds(step, repeats)


def train_rates(model_name: str, length: int, folds: int, batch: int, repeats: int = 10) -> dict:
  """Trajectories per second of one model, the `folds`-model ensemble and the same models one after
  another, each timed in its own block: taken in turn, a convolutional ensemble's large temporaries were
  mapped afresh and page-faulted on every call."""
  one, sequential = one_and_sequential_steps(model_name, length, folds, batch)
  steps = (one, ensemble_step(model_name, length, folds, batch), sequential)
  seconds = [median_seconds(f, repeats) for f in steps]
  return {
    name: float(n / s)
    for name, n, s in zip(("one", "ensemble", "sequential"), (batch, folds * batch, folds * batch), seconds)
  }


ONTHEFLY = ("stored", "onthefly", "onthefly_shared")  # the steps stored_and_onthefly times, in turn


def stored_and_onthefly(model_name: str, length: int, folds: int, batch: int, repeats: int = 10) -> dict:
  """Ensemble training trajectories per second on stored arrays and on batches simulated in the step,
  a data stream per member ("onthefly") or one shared by all ("onthefly_shared"), timed in turn."""
  from andi_jax.train.samplers import per_length_sampler

  steps = [ensemble_step(model_name, length, folds, batch)]
  steps += [
    onthefly_step(model_name, length, folds, batch, per_length_sampler(1, [length] * folds, streams=n))
    for n in (None, 1)
  ]
  return {k: float(folds * batch / s) for k, s in zip(ONTHEFLY, interleaved_seconds(steps, repeats))}


def stored_and_onthefly_buckets(
  model_name: str, widths, folds: int, batch: int, repeats: int = 10
) -> list[dict]:
  """As stored_and_onthefly in all-lengths training (train/all_lengths.py): lengths 10..999 in buckets of
  `widths`. Per bucket, its three steps timed in turn; last, the mix: each bucket's step time weighted
  by the share of steps the bucket sampler gives it (its share of the lengths)."""
  from andi_jax.train.samplers import bucket_lengths, bucket_sampler

  samplers, spans = [bucket_sampler(1, widths, streams=n) for n in (None, 1)], bucket_lengths(widths)
  widths, weights = samplers[0].widths, samplers[0].weights  # the same for both
  rows = []
  for width in widths:
    steps = [ensemble_step(model_name, width, folds, batch)]
    steps += [onthefly_step(model_name, width, folds, batch, sampler) for sampler in samplers]
    rows.append(
      {"lengths": "{}-{}".format(*spans[width]), **dict(zip(ONTHEFLY, interleaved_seconds(steps, repeats)))}
    )
  mix = {k: sum(p * r[k] for p, r in zip(weights, rows)) for k in ONTHEFLY}
  rows.append({"lengths": f"{spans[widths[0]][0]}-{spans[widths[-1]][1]}, mix", **mix})
  return [{**r, **{k: float(folds * batch / r[k]) for k in ONTHEFLY}} for r in rows]


def infer_throughput(
  model_name: str, length: int, folds: int, batch: int, repeats: int = 10, model_config=None
) -> float:
  """Trajectories per second through the fold-averaged jitted forward of the predictor."""
  from andi_jax.infer import FoldForward

  model, _ = build_model(model_name, model_config)
  state = Ensemble(model, TrainConfig(batch_size=batch)).init(folds, length)
  forward = FoldForward(model, classify=False)
  x, lengths = _walks(batch, length), np.full(batch, length, np.int32)
  return batch / median_seconds(lambda: forward(state.params, x, lengths), repeats)
