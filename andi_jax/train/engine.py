"""The ensemble engine: many models of one architecture trained together by one jitted step.

The per-model step is lifted over the model axis by jax.vmap (GPU) or, on a CPU, a loop over the models
(see over_models).

Every leaf of the training state carries a leading model axis M. Each model has its own data split
(fold), its own batches, its own dropout keys, its own reduce-on-plateau scale and its own early stop;
a stopped model's state is frozen while the others go on. Models may differ in trajectory length:
each model m reads length group `group[m]`, left-padded to the ensemble's longest length.

The batch axis is sharded over the local devices (several host devices on a CPU, see
`andi_jax/runtime.py`), so that the many small per-model products run on all cores: each device
computes every model's gradients on its own rows, and one mean over the devices joins them.

The host loop that runs an Ensemble over epochs, with its checkpoints, is train/loop.py's fit.
"""

import dataclasses
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from andi_jax.train.loop import keep_best


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  task: int = 1  # 1: alpha (MSE; best epoch by MAE) or 2: diffusion model (cross-entropy; by error rate)
  batch_size: int = 512
  learning_rate: float = 1e-3
  plateau_factor: float = 0.2  # learning rate x 0.2 (÷ 5) ...
  plateau_patience: int = 2  # ... after this many epochs without a lower validation loss
  max_reductions: int = 1  # early stop once the number of reductions exceeds this
  # A fixed number of steps instead: the learning rate warms up over the first 2 % and follows a cosine
  # to zero at decay_steps; the plateau schedule and early stop are off (data that never repeat).
  decay_steps: int | None = None
  max_epochs: int = 100
  steps_per_epoch: int | None = None  # validate every this many steps (default: one pass over the data)
  eval_batch_size: int = 4096
  checkpoint_every: int = 200  # steps between mid-epoch saves
  seed: int = 0
  ensemble: str = "auto"  # how models share the step: "vmap", "map" or "auto" (see over_models)

  def __post_init__(self):
    if self.ensemble not in ("auto", "vmap", "map"):
      raise ValueError(f"ensemble must be 'auto', 'vmap' or 'map', got {self.ensemble!r}")
    if self.task not in (1, 2):
      raise ValueError(
        f"task must be 1 (alpha: MSE, best by MAE) or 2 (diffusion model: cross-entropy, "
        f"best by error rate), got {self.task!r}"
      )


def resolved_mode(mode: str = "auto") -> str:
  """What over_models(mode) does on this backend: "map" or "vmap"."""
  if mode == "auto":
    return "map" if jax.default_backend() == "cpu" else "vmap"
  return mode


def over_models(mode: str = "auto"):
  """Lifts a per-model function over the leading model axis, inside one compiled step.

  "vmap" batches the models' products into batched matrix products: what a GPU needs to fill up.
  "map" runs the models one after another inside the compiled step (lax.map, a loop): on XLA's CPU
  backend, batched products run slower than the same plain products in turn (benchmarks/RESULTS.md).
  The convolutional families convolve by matrix products on a CPU: XLA's CPU convolution gradients
  run as naive loops inside a loop's body (models/conv_transformer.py).
  "auto" picks "map" on CPU, "vmap" elsewhere (resolved_mode).
  """
  if resolved_mode(mode) == "vmap":
    return jax.vmap
  return lambda f: lambda *args: jax.lax.map(lambda a: f(*a), args)


@dataclasses.dataclass
class EnsembleData:
  """Host arrays for an ensemble. Model m trains on rows train_idx[m] of group group[m].

  With `widths` (ascending bucket widths, the last >= every length), each batch holds rows of one
  length bucket, cut to that bucket's width: left padding puts a row's points in the last columns.
  One compilation per width; padding bounded by the bucket's span instead of the longest row.
  """

  x: np.ndarray  # (G, N, T) or (G, N, C, T) float32, preprocessed and left-padded
  length: np.ndarray  # (G, N) int32 real steps per row
  y: np.ndarray  # (N,) float32 targets (alpha) or int32 labels, shared by the groups
  group: np.ndarray  # (M,) int
  train_idx: np.ndarray  # (M, N_train)
  val_idx: np.ndarray  # (M, N_val)
  widths: tuple[int, ...] | None = None

  def __post_init__(self):
    if self.widths is not None:
      if list(self.widths) != sorted(set(self.widths)) or self.widths[-1] > self.x.shape[-1]:
        raise ValueError(f"widths must ascend and not exceed T={self.x.shape[-1]}, got {self.widths}")
      if self.length.max() > self.widths[-1]:
        raise ValueError(f"a row of {self.length.max()} steps exceeds the widest bucket {self.widths[-1]}")

  @property
  def bucket_widths(self) -> tuple[int, ...]:
    return (self.x.shape[-1],) if self.widths is None else tuple(self.widths)

  def width_of(self, rows_length: np.ndarray) -> np.ndarray:
    widths = np.array(self.bucket_widths)
    return widths[np.searchsorted(widths, rows_length)]

  @property
  def padding_waste(self) -> float:
    """Fraction of the computed steps that fall on padding, over the models' training rows."""
    length = self.length[self.group[:, None], self.train_idx].astype(np.float64)
    return 1.0 - length.sum() / self.width_of(length).sum()


@dataclasses.dataclass(frozen=True)
class OnTheFly:
  """Training batches drawn inside the jitted step instead of read from stored rows.

  simulate(key, width, rows) -> one data stream's trajectories (any pytree), jittable, width and rows
  static; view(simulated, width, member) -> (x (rows, width), length (rows,), y (rows,)), ensemble
  member `member`'s batch (a traced index, e.g. to pick that model's trajectory length). Each device
  simulates its own share of the rows (see Ensemble.draw); each step draws its width from `widths`
  with probabilities `weights`. Validation stays on stored rows (see `validation_only`), and models
  differ by their data streams instead of by folds.

  streams: member m reads stream m % streams, so the members of a stream train on views of the same
  trajectories each step and their simulation is shared; None: a stream per member.
  """

  simulate: Callable
  view: Callable
  widths: tuple[int, ...]
  weights: tuple[float, ...] | None = None
  padding_waste: float = 0.0  # expected fraction of the generated steps that are padding
  streams: int | None = None


def validation_only(n: int, n_models: int) -> tuple[np.ndarray, np.ndarray]:
  """(train_idx, val_idx) for on-the-fly training: no stored training rows, every model validates on all n."""
  return np.zeros((n_models, 0), np.int64), np.tile(np.arange(n), (n_models, 1))


def kfold_indices(n: int, folds: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """K-fold split: fold k validates on the k-th of `folds` equal parts of a seeded permutation."""
  if folds < 2:
    raise ValueError(f"need at least 2 folds for an 80/20-style split, got {folds}")
  perm = np.random.default_rng(seed).permutation(n)
  size = n // folds
  val = np.stack([perm[k * size : (k + 1) * size] for k in range(folds)])
  train = np.stack([np.setdiff1d(perm[: folds * size], v, assume_unique=True) for v in val])
  return train, val


class EnsembleState(flax.struct.PyTreeNode):
  params: Any
  opt_state: Any
  plateau: optax.contrib.ReduceLROnPlateauState
  reductions: jax.Array  # (M,) learning-rate reductions so far
  stopped: jax.Array  # (M,) bool
  best_params: Any
  best_metric: jax.Array  # (M,) best validation MAE (task 1) or error rate (task 2)
  best_epoch: jax.Array  # (M,)


class Ensemble:
  """Builds and runs the jitted ensemble training and evaluation functions for one model."""

  def __init__(self, model, config: TrainConfig):
    self.model, self.config = model, config
    patience = config.plateau_patience
    if config.decay_steps is None:
      self.tx = optax.adam(config.learning_rate)
    else:
      self.tx = optax.adam(
        optax.warmup_cosine_decay_schedule(
          0.0, config.learning_rate, max(1, config.decay_steps // 50), config.decay_steps
        )
      )
      patience = 10**9  # the scale stays 1: no reduction, no early stop
    self.plateau = optax.contrib.reduce_on_plateau(
      factor=config.plateau_factor, patience=patience, rtol=1e-4
    )  # PyTorch default threshold
    devices = np.array(jax.devices())
    self.mesh = Mesh(devices if config.batch_size % len(devices) == 0 else devices[:1], ("batch",))
    self.batch_sharding = NamedSharding(self.mesh, P(None, "batch"))
    self.replicated = NamedSharding(self.mesh, P())
    self._over_models = over_models(config.ensemble)
    self.train_step = jax.jit(self._train_step, donate_argnums=0)
    self.evaluate = jax.jit(self._over_models(self._eval_batch))
    self.end_epoch = jax.jit(self._end_epoch, donate_argnums=0)
    self._sampled_steps = {}

  # --- pure per-model functions, lifted over the model axis -------------------------------
  def _loss(self, out, y):
    if self.config.task == 1:
      pred = out[:, 0]
      return jnp.mean((pred - y) ** 2), jnp.abs(pred - y)
    loss = optax.softmax_cross_entropy_with_integer_labels(out, y)
    return loss.mean(), (jnp.argmax(out, -1) != y).astype(jnp.float32)

  def _grads(self, params, x, length, y, key):
    def loss_fn(p):
      out = self.model.apply({"params": p}, x, length, train=True, rngs={"dropout": key})
      return self._loss(out, y)[0]

    return jax.value_and_grad(loss_fn)(params)

  def _update(self, params, opt_state, grads, scale, stopped):
    updates, new_opt = self.tx.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, jax.tree.map(lambda u: scale * u, updates))
    keep = lambda new, old: jnp.where(stopped, old, new)  # a stopped model stops changing
    return jax.tree.map(keep, new_params, params), jax.tree.map(keep, new_opt, opt_state)

  def _train_step(self, state: EnsembleState, x, length, y, keys):
    """Each device computes every model's gradients on its own rows, and one mean over the devices joins
    them all. Left to jit's sharding propagation, each model's gradients were all-reduced inside the
    ensemble's loop, and the devices waited for each other once per model.
    Each device's rows draw their own dropout masks (the member's key folded with the device's index),
    so a run depends on the device count, as on-the-fly data do (see draw)."""

    def local(params, x, length, y, keys):
      keys = jax.vmap(jax.random.fold_in, (0, None))(keys, jax.lax.axis_index("batch"))
      return jax.lax.pmean(self._over_models(self._grads)(params, x, length, y, keys), "batch")

    rows = P(None, "batch")
    # check_vma off: the models' loops start from constants that the type check would ask to mark as varying
    loss, grads = jax.shard_map(
      local, mesh=self.mesh, in_specs=(P(), rows, rows, rows, P()), out_specs=P(), check_vma=False
    )(state.params, x, length, y, keys)
    params, opt_state = jax.vmap(self._update)(
      state.params, state.opt_state, grads, state.plateau.scale, state.stopped
    )
    return state.replace(params=params, opt_state=opt_state), loss

  def draw(self, onthefly: OnTheFly, data_keys, width: int):
    """Every member's batch, (M, B, ...) sharded as stored batches are. Each device simulates its own rows
    from the stream's key folded with the device's index (so a run's data depend on the device count):
    drawn as one batch and then sharded, the simulation was not split between the devices (the
    recipe's model pool and permutation mix rows). The streams' draws are vmapped whatever the family's
    ensemble mode: one simulation of all streams' rows costs less than one per stream. Stream s's
    simulation is drawn from data_keys[s]; member g * streams + s views it, the stream's simulation
    broadcast to its members rather than copied for each."""
    rows = self.config.batch_size // self.mesh.size
    members = data_keys.shape[0]
    streams = onthefly.streams or members
    if members % streams:
      raise ValueError(f"{members} ensemble members cannot share {streams} data streams evenly")

    def local(data_keys):
      shard = jax.lax.axis_index("batch")
      sims = jax.vmap(lambda k: onthefly.simulate(jax.random.fold_in(k, shard), width, rows))(
        data_keys[:streams]
      )
      view = lambda g: jax.vmap(lambda s, sim: onthefly.view(sim, width, g * streams + s))(
        jnp.arange(streams), sims
      )
      batches = jax.vmap(view)(jnp.arange(members // streams))  # (members // streams, streams, rows, ...)
      return jax.tree.map(lambda a: a.reshape((members,) + a.shape[2:]), batches)

    return jax.shard_map(local, mesh=self.mesh, in_specs=P(), out_specs=P(None, "batch"))(data_keys)

  def sampled_step(self, onthefly: OnTheFly):
    """The training step with its batches drawn inside: (state, data_keys, keys, width) -> (state, loss)."""
    if onthefly not in self._sampled_steps:

      def step(state, data_keys, keys, width):
        return self._train_step(state, *self.draw(onthefly, data_keys, width), keys)

      self._sampled_steps[onthefly] = jax.jit(step, static_argnames="width", donate_argnums=0)
    return self._sampled_steps[onthefly]

  def _eval_batch(self, params, x, length, y, valid):
    out = self.model.apply({"params": params}, x, length, train=False)
    loss = (
      optax.squared_error(out[:, 0], y)
      if self.config.task == 1
      else optax.softmax_cross_entropy_with_integer_labels(out, y)
    )
    metric = self._loss(out, y)[1]
    # Per row, summed on the host (no cross-device reduction). A padded row is masked by where: its
    # output may be anything, and NaN * 0 is NaN.
    mask = lambda v: jnp.where(valid > 0, v, 0.0)
    return mask(loss), mask(metric)

  def _end_epoch(self, state: EnsembleState, val_loss, val_metric, epoch):
    def one(params, best_params, plateau, reductions, stopped, best_metric, best_epoch, loss, metric):
      best_params, new_best_metric, improved = keep_best(best_params, best_metric, params, metric, stopped)
      _, new_plateau = self.plateau.update(jnp.zeros(()), plateau, value=loss)
      new_plateau = jax.tree.map(lambda n, o: jnp.where(stopped, o, n), new_plateau, plateau)
      reductions = reductions + (new_plateau.scale < plateau.scale)
      stopped = stopped | (reductions > self.config.max_reductions)
      return (
        best_params,
        new_plateau,
        reductions,
        stopped,
        new_best_metric,
        jnp.where(improved, epoch, best_epoch),
      )

    best_params, plateau, reductions, stopped, best_metric, best_epoch = jax.vmap(one)(
      state.params,
      state.best_params,
      state.plateau,
      state.reductions,
      state.stopped,
      state.best_metric,
      state.best_epoch,
      val_loss,
      val_metric,
    )
    return state.replace(
      best_params=best_params,
      plateau=plateau,
      reductions=reductions,
      stopped=stopped,
      best_metric=best_metric,
      best_epoch=best_epoch,
    )

  # --- host side ---------------------------------------------------------------------------
  def init(self, n_models: int, steps: int, channels: tuple[int, ...] = ()) -> EnsembleState:
    keys = jax.random.split(jax.random.key(self.config.seed), n_models)
    x = jnp.zeros((1, *channels, steps), jnp.float32)  # channels: axes of a row before its steps
    length = jnp.full((1,), steps, jnp.int32)
    # jitted: op by op, a ResNet's init compiles hundreds of tiny kernels (twice as slow on a CPU)
    params = jax.jit(jax.vmap(lambda k: self.model.init({"params": k}, x, length, train=False)["params"]))(
      keys
    )
    zeros = jnp.zeros((n_models,))
    state = EnsembleState(
      params=params,
      opt_state=jax.vmap(self.tx.init)(params),
      plateau=jax.vmap(self.plateau.init)(params),
      reductions=zeros.astype(jnp.int32),
      stopped=zeros.astype(bool),
      best_params=jax.tree.map(jnp.copy, params),
      best_metric=zeros + jnp.inf,
      best_epoch=zeros.astype(jnp.int32) - 1,
    )
    return jax.device_put(state, self.replicated)

  def batch(self, data: EnsembleData, idx_MxB, width: int):
    g = data.group[:, None]
    arrays = (data.x[g, idx_MxB][..., -width:], data.length[g, idx_MxB], data.y[idx_MxB])
    return jax.device_put(arrays, self.batch_sharding)

  def _by_bucket(self, data: EnsembleData, idx_MxN):
    """For each bucket width, each model's rows of idx_MxN that fall in it."""
    rows_length = data.length[data.group[:, None], idx_MxN]
    width = data.width_of(rows_length)
    return [(w, [idx[wm == w] for idx, wm in zip(idx_MxN, width)]) for w in data.bucket_widths]

  def validate(self, params, data: EnsembleData) -> tuple[np.ndarray, np.ndarray]:
    """Mean validation loss and metric per model; per bucket, fixed-size chunks masked where short."""
    n_val = data.val_idx.shape[1]
    loss = metric = np.zeros(len(data.group))
    jax.block_until_ready(params)  # no training step left in flight beside the evaluations (see loop.fit)
    for width, rows in self._by_bucket(data, data.val_idx):
      n = max(len(r) for r in rows)
      if n == 0:
        continue
      size = min(self.config.eval_batch_size, n)
      size += (-size) % len(self.mesh.devices.flat)
      n_pad = -(-n // size) * size
      # padded with the model's own rows of the bucket (another model's where it has none there)
      fill = next(r for r in rows if len(r))
      idx = np.stack([np.resize(r if len(r) else fill, n_pad) for r in rows])
      valid = np.stack([np.arange(n_pad) < len(r) for r in rows]).astype(np.float32)
      for start in range(0, n_pad, size):
        batch = self.batch(data, idx[:, start : start + size], width)
        # Fetched chunk by chunk: independent evaluations left in flight together, each waiting for
        # its partner on the other host device, once stalled a benchmark run for good.
        l, m = self.evaluate(
          params, *batch, jax.device_put(valid[:, start : start + size], self.batch_sharding)
        )
        loss, metric = loss + np.asarray(l, np.float64).sum(1), metric + np.asarray(m, np.float64).sum(1)
    return (loss / n_val).astype(np.float32), (metric / n_val).astype(np.float32)

  def epoch_batches(self, data: EnsembleData, epoch: int) -> list[tuple[int, np.ndarray]]:
    """The epoch's steps as (width, (M, B) row indices), a function of (seed, epoch).

    Each model shuffles its own training rows; every step takes all models' rows from one bucket (one
    shape), with as many steps per bucket as the model with the fewest rows there fills. A shorter
    `steps_per_epoch` takes the first steps of that shuffled pass, a fresh random part every epoch.
    """
    rng = np.random.default_rng([self.config.seed, epoch])
    B = self.config.batch_size
    steps = []
    for width, rows in self._by_bucket(data, data.train_idx):
      n = min(len(r) for r in rows) // B
      rows = np.stack([rng.permutation(r)[: n * B].reshape(n, B) for r in rows], 1)  # (n, M, B)
      steps += [(width, r) for r in rows]
    return [steps[i] for i in rng.permutation(len(steps))][: self.config.steps_per_epoch]
