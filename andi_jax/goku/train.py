"""Training and evaluation of GOKU-UI, its ablations and baselines, many runs stacked on a leading axis.

Every run m has its own seed and training-set size n_train[m] (it draws from trajectories 0..n-1, as the
Julia loaders do); one jitted step lifts the per-run step over the run axis (train.engine.over_models:
vmap on an accelerator, lax.map on a CPU). Unlike train.engine, the batch is not sharded over the CPU's
host devices: for these models that measured no faster on the shared 2-core machine. Runs with the same
seed start from the same initial parameters, whatever their size.

Each step draws, per run, a batch of trajectories and a fresh random window of seq_len frames in each;
the latent windows are projected to observations inside the step. Every eval_every steps the
reconstruction loss on fixed validation windows (fixed noise) is measured and the best parameters kept
(train.loop.keep_best). A step whose gradient is not finite (an exploding fixed-step SDE solve) leaves
that run unchanged and is counted (optax.apply_if_finite): a non-finite loss does not stop the training.
Checkpoints and their configuration check on resuming are train.loop's (Checkpoints).

Learning-rate schedules (both start with the Julia code's linear warm-up from 1e-7):
- "cosine": then a cosine decay over a fixed step count. The CPU-sized experiment uses it: a short
  budget is better spent on a decay than on waiting for plateaus.
- "julia": GokuNets' rule (Experiments/src/training_functions.jl). After the warm-up, a check improves
  when val < best * (1 - threshold); after more than patience_first (then patience_next) checks without
  improvement the schedule index k grows and lr = lr0 0.995^(k-1) cos^4(pi (k-1) / 50) + min_lr
  (Cos4Exp: cyclic, not monotone). A run stops after more than stop_patience checks without
  improvement, or after max_epochs epochs of floor(n / batch) batches; a stopped run's state is frozen.
"""

import dataclasses
import os
import time
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from andi_jax.goku.model import init_params
from andi_jax.train import checkpoint, loop
from andi_jax.train.engine import over_models


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  steps: int = 1500  # cosine: the step count; julia: the most steps any run may take
  batch_size: int = 32
  seq_len: int = 46
  learning_rate: float = 5.251e-3
  warmup_steps: int = 180  # linear from 1e-7, as in the Julia code
  schedule: str = "cosine"  # "cosine" or "julia" (see the module docstring)
  end_lr_fraction: float = 0.01  # cosine: decays to this fraction of the peak by the last step
  min_lr: float = 1e-5  # julia: Cos4Exp's floor
  threshold: float = 0.01  # julia: relative improvement that resets the plateau counters
  patience_first: int = 50  # julia: checks without improvement before the first lr change
  patience_next: int = 2  # julia: ... and before each later one
  cos4_period: int = 50
  cos4_decay: float = 0.995
  stop_patience: int = 350  # julia: checks without improvement before the run stops
  max_epochs: int = 20_000  # julia: epochs of floor(n / batch_size) batches
  weight_decay: float = 1e-10
  continuity_weight: float = 2.0
  kl_decay: float = 0.999999  # Latent ODE KL weight: 1 - kl_decay^step
  eval_every: int = 50
  checkpoint_every: int = 500
  ensemble: str = "auto"  # see train.engine.over_models

  def __post_init__(self):
    if self.schedule not in ("cosine", "julia"):
      raise ValueError(f"schedule must be 'cosine' or 'julia', got {self.schedule!r}")


class Schedule(flax.struct.PyTreeNode):
  """Per-run learning-rate state (every leaf (M,)); the cosine schedule reads only `stop_at`."""

  lr: jax.Array  # julia: the rate after the warm-up
  best: jax.Array  # julia: the plateau rule's reference loss
  since_best: jax.Array  # checks without improvement since the last lr change
  stale: jax.Array  # checks without improvement (early stopping)
  k: jax.Array  # Cos4Exp index
  patience: jax.Array
  stop_at: jax.Array  # the step at which the run ends
  stopped: jax.Array


class RunState(flax.struct.PyTreeNode):
  params: Any  # every leaf (M, ...)
  opt_state: Any
  best_params: Any
  best_val: jax.Array  # (M,)
  best_step: jax.Array  # (M,)
  schedule: Schedule


def nrmse(x_NxTxD, x_hat_NxTxD, scale=None):
  """GOKU-UI's NRMSE, one value per sample: sqrt(mean over time and features of the squared error),
  divided by mean|x| over the whole scored tensor (pass `scale` when scoring it in pieces)."""
  scale = jnp.mean(jnp.abs(x_NxTxD)) if scale is None else scale
  return jnp.sqrt(jnp.mean((x_NxTxD - x_hat_NxTxD) ** 2, axis=(1, 2))) / scale


def naive(x_NxTxD):
  """The naive predictor: each sample's temporal mean of the scored ground truth."""
  return jnp.broadcast_to(jnp.mean(x_NxTxD, axis=1, keepdims=True), x_NxTxD.shape)


def windows(z_NxTxS, w_SxD, idx_B, start_B, length: int):
  """Observed windows (B, length, D) of latent paths, projected to observations."""
  z = z_NxTxS[idx_B[:, None], start_B[:, None] + jnp.arange(length)]
  return z @ w_SxD


def cos4exp(k, config: TrainConfig):
  """GokuNets' Cos4Exp learning rate at schedule index k >= 1."""
  return (
    config.learning_rate * config.cos4_decay ** (k - 1) * jnp.cos(jnp.pi * (k - 1) / config.cos4_period) ** 4
    + config.min_lr
  )


def plateau_update(s: Schedule, val, step, config: TrainConfig) -> Schedule:
  """One validation check of the "julia" rule for one run (scalars); no-op during the warm-up."""
  active = (step > config.warmup_steps) & ~s.stopped
  improved = val < s.best * (1.0 - config.threshold)
  since = jnp.where(improved, 0, s.since_best + 1)
  change = ~improved & (since > s.patience)
  k = s.k + change
  new = Schedule(
    lr=jnp.where(change, cos4exp(k, config), s.lr),
    best=jnp.where(improved, val, s.best),
    since_best=jnp.where(change, 0, since),
    stale=jnp.where(improved, 0, s.stale + 1),
    k=k,
    patience=jnp.where(change, config.patience_next, s.patience),
    stop_at=s.stop_at,
    stopped=s.stopped,
  )
  new = new.replace(stopped=new.stale > config.stop_patience)
  return jax.tree.map(lambda n, o: jnp.where(active, n, o), new, s)


class Trainer:
  """Jitted training, validation and test evaluation of one model family over stacked runs."""

  def __init__(self, model, config: TrainConfig):
    self.model, self.config = model, config
    self.warmup = optax.linear_schedule(1e-7, config.learning_rate, config.warmup_steps)
    self.cosine = optax.join_schedules(
      [
        self.warmup,
        optax.cosine_decay_schedule(
          config.learning_rate, max(1, config.steps - config.warmup_steps), alpha=config.end_lr_fraction
        ),
      ],
      [config.warmup_steps],
    )
    # AdamW with the learning rate applied per run in the step (the "julia" schedule differs by run).
    self.tx = optax.apply_if_finite(
      optax.chain(
        optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8), optax.add_decayed_weights(config.weight_decay)
      ),
      max_consecutive_errors=config.steps,
    )
    self._over_models = over_models(config.ensemble)
    self.train_step = jax.jit(self._train_step, donate_argnums=0)
    self.validate = jax.jit(self._validate, donate_argnums=0)
    self.predict_errors = jax.jit(self._predict_errors, static_argnums=5)
    self._jit_init = jax.jit(self._init)
    self._lrs = jax.jit(jax.vmap(self._lr, (0, None)))
    # One seed at a time: vmapping the initialisers over keys compiles 2.5 times slower.
    self._init_params = jax.jit(lambda key, x: init_params(self.model, key, x))

  def _lr(self, s: Schedule, step):
    if self.config.schedule == "cosine":
      return self.cosine(step)
    return jnp.where(step < self.config.warmup_steps, self.warmup(step), s.lr)

  # --- pure per-run functions ----------------------------------------------------------------
  def _loss(self, params, x, key, step):
    cfg = self.config
    x_hat, aux = self.model.apply({"params": params}, x, key, train=True)
    rec = jnp.mean((x - x_hat) ** 2) / jnp.mean(jnp.abs(x))
    penalty = cfg.continuity_weight * aux.get("continuity", 0.0) + (1.0 - cfg.kl_decay**step) * aux.get(
      "kl", 0.0
    )
    return rec + penalty

  def _sample(self, n_train, key, z_train, w):
    cfg = self.config
    k_idx, k_start = jax.random.split(key)
    idx = jax.random.randint(k_idx, (cfg.batch_size,), 0, n_train)
    start = jax.random.randint(k_start, (cfg.batch_size,), 0, z_train.shape[1] - cfg.seq_len + 1)
    return windows(z_train, w, idx, start, cfg.seq_len)

  def _one_step(self, params, opt_state, schedule: Schedule, x, key, step):
    loss, grads = jax.value_and_grad(self._loss)(params, x, key, step)
    updates, new_opt = self.tx.update(grads, opt_state, params)
    lr = self._lr(schedule, step)
    new_params = optax.apply_updates(params, jax.tree.map(lambda u: -lr * u, updates))
    frozen = schedule.stopped | (step >= schedule.stop_at)
    keep = lambda new, old: jnp.where(frozen, old, new)
    return jax.tree.map(keep, new_params, params), jax.tree.map(keep, new_opt, opt_state), loss

  def _train_step(self, state: RunState, step, n_train_M, keys_M, z_train, w):
    k_data, k_model = jnp.moveaxis(jax.vmap(jax.random.split)(keys_M), 1, 0)
    x = self._over_models(lambda n, k: self._sample(n, k, z_train, w))(n_train_M, k_data)
    one = lambda p, o, s, x, k: self._one_step(p, o, s, x, k, step)
    params, opt_state, loss = self._over_models(one)(
      state.params, state.opt_state, state.schedule, x, k_model
    )
    return state.replace(params=params, opt_state=opt_state), loss

  def _val_loss(self, params, x_val, key):
    x_hat, _ = self.model.apply({"params": params}, x_val, key, train=False)
    return jnp.mean((x_val - x_hat) ** 2) / jnp.mean(jnp.abs(x_val))

  def _validate(self, state: RunState, step, x_val, key):
    val = self._over_models(lambda p: self._val_loss(p, x_val, key))(state.params)
    # a stopped run's frozen parameters score as before: never better
    best_params, best_val, better = loop.keep_best(state.best_params, state.best_val, state.params, val)
    schedule = state.schedule
    if self.config.schedule == "julia":
      schedule = jax.vmap(lambda s, v: plateau_update(s, v, step, self.config))(schedule, val)
    schedule = schedule.replace(stopped=schedule.stopped | (step >= schedule.stop_at))
    return state.replace(
      best_params=best_params,
      best_val=best_val,
      best_step=jnp.where(better, step, state.best_step),
      schedule=schedule,
    ), val

  def _predict_errors(self, params_M, x_in, x_out, key, scales, forecast: int):
    """Per run and sample: NRMSE of the reconstruction of x_in and of the forecast x_out."""

    def one(params):
      x_hat, _ = self.model.apply({"params": params}, x_in, key, forecast=forecast, train=False)
      t = x_in.shape[1]
      return nrmse(x_in, x_hat[:, :t], scales[0]), nrmse(x_out, x_hat[:, t:], scales[1])

    return self._over_models(one)(params_M)

  # --- host side -----------------------------------------------------------------------------
  def _init(self, per_run_params, stop_at_M):
    params = jax.tree.map(lambda *leaves: jnp.stack(leaves), *per_run_params)  # fresh buffers: donated
    m = len(stop_at_M)
    zeros = jnp.zeros((m,), jnp.int32)
    schedule = Schedule(
      lr=jnp.full((m,), self.config.learning_rate, jnp.float32),
      best=jnp.full((m,), jnp.inf, jnp.float32),
      since_best=zeros,
      stale=zeros,
      k=zeros + 1,
      patience=zeros + self.config.patience_first,
      stop_at=stop_at_M,
      stopped=jnp.zeros((m,), bool),
    )
    return RunState(
      params=params,
      opt_state=jax.vmap(self.tx.init)(params),
      best_params=jax.tree.map(jnp.copy, params),  # own buffers: the step donates
      best_val=jnp.full((m,), jnp.inf, jnp.float32),
      best_step=zeros - 1,
      schedule=schedule,
    )

  def stop_steps(self, n_train) -> np.ndarray:
    """The step at which each run ends: the step count, or (julia) max_epochs whole-batch epochs."""
    cfg = self.config
    n = np.asarray(n_train)
    if cfg.schedule == "cosine":
      return np.full(n.shape, cfg.steps, np.int32)
    return np.minimum(cfg.steps, cfg.max_epochs * np.maximum(n // cfg.batch_size, 1)).astype(np.int32)

  def init(self, seeds, example_x, n_train=None) -> RunState:
    """Initial state; runs with the same seed share their initial parameters."""
    by_seed = {
      s: self._init_params(jax.random.fold_in(jax.random.key(int(s)), 0), example_x) for s in set(seeds)
    }
    stop_at = self.stop_steps(np.zeros(len(seeds), int) if n_train is None else n_train)
    return self._jit_init([by_seed[s] for s in seeds], jnp.asarray(stop_at))

  def fit(
    self,
    z_train,
    z_val,
    w,
    n_train,
    seeds,
    workdir=None,
    progress: bool = True,
    desc: str = "train",
    force: bool = False,
  ) -> tuple[RunState, dict]:
    """Trains runs (n_train[m], seeds[m]); resumes from workdir's latest save of the same runs, and
    exports the best parameters to workdir/best when done. A save of other runs, model or training
    settings raises train.loop.ConfigMismatchError naming the fields (force: resume it all the same).

    Returns the final state and a record: validation history, steps, training seconds (over resumes).
    """
    cfg = self.config
    if int(np.max(n_train)) > len(z_train):
      raise ValueError(f"a run asks for {int(np.max(n_train))} training trajectories; {len(z_train)} exist")
    n_train_M = jnp.asarray(n_train, jnp.int32)
    z_train, w = jnp.asarray(z_train), jnp.asarray(w)
    # Fixed validation windows and noise: every check scores the same task.
    k_val = jax.random.key(10_000)
    start = jax.random.randint(k_val, (len(z_val),), 0, z_val.shape[1] - cfg.seq_len + 1)
    x_val = windows(jnp.asarray(z_val), w, jnp.arange(len(z_val)), start, cfg.seq_len)
    # Training draws: a stream per (seed, size), apart from the initialisation's (fold_in 0).
    run_keys = jnp.stack(
      [
        jax.random.fold_in(jax.random.fold_in(jax.random.key(int(s)), 1), int(n))
        for s, n in zip(seeds, n_train)
      ]
    )
    runs = {"n_train": [int(n) for n in n_train], "seeds": [int(s) for s in seeds]}
    checkpoints = loop.Checkpoints(
      os.path.join(workdir, "train") if workdir is not None else None,
      loop.fingerprint(self.model, cfg, runs=runs),
    )
    state, record = checkpoints.resume(self.init(seeds, x_val[:2], n_train), force)
    step, history, seconds = (
      (0, [], 0.0) if record is None else (record["step"], record["history"], record["seconds"])
    )
    keys_at = jax.jit(jax.vmap(jax.random.fold_in, (0, None)))
    last = int(np.max(self.stop_steps(n_train)))
    bar = tqdm(total=last, initial=step, desc=desc, disable=not progress, leave=False)
    ran, start_time = 0, time.perf_counter()
    elapsed = lambda: seconds + time.perf_counter() - start_time
    all_stopped = bool(np.all(np.asarray(state.schedule.stopped)))  # changes only at validation
    while step < last and not all_stopped:
      state, loss = self.train_step(state, step, n_train_M, keys_at(run_keys, step), z_train, w)
      step, ran = step + 1, ran + 1
      bar.update()
      if step % cfg.eval_every == 0 or step == last:
        state, val = self.validate(state, step, x_val, jax.random.key(10_001))
        all_stopped = bool(np.all(np.asarray(state.schedule.stopped)))
        history.append(
          {
            "step": step,
            "lr": np.asarray(self._lrs(state.schedule, step)).tolist(),
            "train_loss": np.asarray(loss).tolist(),
            "val_loss": np.asarray(val).tolist(),
          }
        )
        bar.set_postfix(val=f"{float(np.median(val)):.4f}")
      if step % cfg.checkpoint_every == 0 or step == last or all_stopped:
        checkpoints.save(step, state, {"step": step, "history": history, "seconds": elapsed()})
    jax.block_until_ready(state)
    seconds = elapsed()
    bar.close()
    checkpoints.wait()
    if workdir is not None:
      checkpoint.save_params(os.path.join(workdir, "best"), state.best_params)
      checkpoint.write_meta(
        os.path.join(workdir, "best"),
        {
          "model": repr(self.model),
          **runs,
          "best_step": np.asarray(state.best_step).tolist(),
          "best_val": np.asarray(state.best_val).tolist(),
        },
      )
    skipped = np.asarray(state.opt_state.total_notfinite).tolist()
    return state, {
      "history": history,
      "steps": step,
      "steps_run": ran,
      "seconds": seconds,
      "skipped_steps": skipped,
    }

  def evaluate(self, params_M, z_test, w, seq_len: int, forecast: int, chunk: int = 100) -> dict:
    """Test NRMSE per run and sample (reconstruction of the first seq_len frames, forecast of the next
    `forecast`), the naive baseline's, with GOKU-UI's whole-tensor denominators."""
    x = np.asarray(z_test[:, : seq_len + forecast]) @ np.asarray(w)
    x_in, x_out = x[:, :seq_len], x[:, seq_len:]
    scales = jnp.array([np.abs(x_in).mean(), np.abs(x_out).mean()])
    key = jax.random.key(20_000)  # the test noise, the same for every run
    rec, fc = [], []
    for i in range(0, len(x), chunk):
      r, f = self.predict_errors(
        params_M,
        jnp.asarray(x_in[i : i + chunk]),
        jnp.asarray(x_out[i : i + chunk]),
        jax.random.fold_in(key, i),
        scales,
        forecast,
      )
      rec.append(np.asarray(r))
      fc.append(np.asarray(f))
    return {
      "reconstruction": np.concatenate(rec, 1),
      "forecast": np.concatenate(fc, 1),
      "naive_reconstruction": np.asarray(nrmse(x_in, naive(x_in), scales[0])),
      "naive_forecast": np.asarray(nrmse(x_out, naive(x_out), scales[1])),
    }
