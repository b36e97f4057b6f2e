"""The host side of training: `fit` runs an ensemble (train/engine.py) epoch by epoch.

Every training loop (fit here, GOKU-UI's Trainer.fit) shares the pieces of this module: the best parameters
by a per-model metric (keep_best), and saves of (state, progress) that resume only with the configuration
they were started with (Checkpoints, fingerprint). fit also stops on a non-finite loss (NonFiniteError).
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import TYPE_CHECKING, Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from andi_jax.train import checkpoint

if TYPE_CHECKING:
  from andi_jax.train.engine import Ensemble, EnsembleData, EnsembleState, OnTheFly


class NonFiniteError(FloatingPointError):
  """A training or validation loss is NaN or infinite: the run stops instead of keeping it."""


class ConfigMismatchError(ValueError):
  """A run resumed from a checkpoint with a configuration other than the one it started with."""


def keep_best(best_params, best_metric, params, metric, frozen=None):
  """Each model's best (parameters, metric), and whether it improved: a model whose metric is below its best
  (and that is not frozen) takes its current parameters. Leaves lead with `metric`'s model axis (a scalar
  metric inside a vmap over the models)."""
  improved = metric < best_metric
  if frozen is not None:
    improved = improved & ~frozen
  pick = lambda new, old: jnp.where(
    improved.reshape(improved.shape + (1,) * (new.ndim - improved.ndim)), new, old
  )
  return jax.tree.map(pick, params, best_params), jnp.where(improved, metric, best_metric), improved


def fingerprint(model, config, free: tuple[str, ...] = (), **sections: dict) -> dict:
  """What a resumed run must share with the run it continues: the training configuration but its `free`
  fields, the model's configuration, and any further `sections`."""
  train = {k: v for k, v in dataclasses.asdict(config).items() if k not in free}
  model_config = getattr(model, "config", None)
  model_fields = dataclasses.asdict(model_config) if dataclasses.is_dataclass(model_config) else {}
  # through JSON, as the checkpoint stores it (tuples become lists)
  return json.loads(
    json.dumps({"train": train, "model": {"name": type(model).__name__, **model_fields}, **sections})
  )


def config_changes(saved: dict, current: dict) -> list[str]:
  """'section.field: saved -> current' for every field that differs."""
  changes = []
  for section in sorted(set(saved) | set(current)):
    old, new = saved.get(section, {}), current.get(section, {})
    changes += [
      f"{section}.{k}: {old.get(k)!r} -> {new.get(k)!r}"
      for k in sorted(set(old) | set(new))
      if old.get(k) != new.get(k)
    ]
  return changes


class Checkpoints:
  """A run's saves of (state, progress) in `workdir` (None: nothing is saved or resumed). Every progress
  record holds the run's configuration `config` (see fingerprint)."""

  def __init__(self, workdir, config: dict):
    self.workdir, self.config = workdir, config
    self.manager = checkpoint.manager(workdir) if workdir is not None else None

  def resume(self, like_state, force: bool = False) -> tuple[Any, dict | None]:
    """The latest save's (state, progress), or (like_state, None) without one. A save of another
    configuration raises ConfigMismatchError naming the fields that differ (force: resume it all the same)."""
    if self.manager is None or self.manager.latest_step() is None:
      return like_state, None
    state, progress = checkpoint.restore_train(self.manager, like_state)
    changes = config_changes(progress.get("config", {}), self.config)
    if changes and not force:
      raise ConfigMismatchError(
        f"{self.workdir} holds a checkpoint of other runs or settings ("
        f"{'; '.join(changes)}); resume with the original configuration, or force it"
      )
    return state, progress

  def save(self, step: int, state, progress: dict) -> None:
    """Saves once the state is computed: the training step donates its buffers right after."""
    if self.manager is not None:
      jax.block_until_ready(state)
      checkpoint.save_train(self.manager, step, state, {**progress, "config": self.config})

  def wait(self) -> None:
    if self.manager is not None:
      self.manager.wait_until_finished()


@dataclasses.dataclass
class FitResult:
  state: EnsembleState
  history: list[dict]  # one entry per epoch: lr scale, validation loss and metric per model
  steps: int  # training steps this call ran
  seconds: float  # wall time of those steps, compilation included
  initial_metric: list[float]  # validation metric per model of the initial parameters


# Fields that change neither the trajectory of training nor its result: a resumed run may change them.
FREE_FIELDS = ("eval_batch_size", "checkpoint_every", "max_epochs")


def fit(
  ensemble: Ensemble,
  data: EnsembleData,
  workdir=None,
  *,
  max_steps: int | None = None,
  time_budget: float | None = None,
  callback: Callable[[int], None] | None = None,
  on_epoch: Callable[[EnsembleState, dict], None] | None = None,
  progress: bool = True,
  desc: str = "train",
  stop_at: float | None = None,
  onthefly: OnTheFly | None = None,
  force: bool = False,
) -> FitResult:
  """Trains until every model has stopped or max_epochs; resumes from `workdir` if it holds a save.

  max_steps / time_budget end this call early (after a save), e.g. for equal-time comparisons;
  stop_at ends it after the first epoch where every model's validation metric is at most stop_at.
  onthefly: training batches generated inside the step (config.steps_per_epoch steps an epoch).
  callback(global_step) runs after every step; on_epoch(state, history entry) after every epoch's
  validation. Each history entry holds `seconds`: wall time of the run's training and validation so far,
  summed over the calls that resumed it.
  A resumed run whose configuration differs from the saved one raises ConfigMismatchError naming the
  fields (force: resume all the same). A non-finite training or validation loss raises NonFiniteError
  naming the epoch, step and models; no checkpoint holding it is written.
  """
  cfg = ensemble.config
  n_models = len(data.group)
  if onthefly is not None:
    if cfg.steps_per_epoch is None:
      raise ValueError("on-the-fly data has no epochs: set TrainConfig.steps_per_epoch")
    steps_per_epoch = cfg.steps_per_epoch
  else:
    steps_per_epoch = len(ensemble.epoch_batches(data, 0))
  if steps_per_epoch == 0:
    raise ValueError(
      f"{data.train_idx.shape[1]} training rows per model fill no batch of "
      f"{cfg.batch_size} (in any length bucket)"
    )
  checkpoints = Checkpoints(workdir, fingerprint(ensemble.model, cfg, FREE_FIELDS))
  state, info = checkpoints.resume(ensemble.init(n_models, data.x.shape[-1], data.x.shape[2:-1]), force)
  if info is not None:
    state = jax.device_put(state, ensemble.replicated)
    epoch, step, history, initial = info["epoch"], info["step"], info["history"], info["initial_metric"]
  else:
    epoch, step, history = 0, 0, []
    initial = _validated(ensemble, state.params, data, "the initial parameters")[1].tolist()

  # Different programs over the host devices in flight together can deadlock XLA:CPU (validation
  # behind an on-the-fly training step hung for good): every change of program (to validation, to the
  # epoch's end, to a save) waits for the one before, and the losses in flight are checked then.
  losses = []  # (global step, loss per model) since the last check

  def check_losses():
    bad = [(s, np.flatnonzero(~np.isfinite(np.asarray(loss)))) for s, loss in losses]
    losses.clear()
    first = next(((s, models) for s, models in bad if models.size), None)
    if first is not None:
      s, models = first
      raise NonFiniteError(
        f"{desc}: training loss not finite at epoch {s // steps_per_epoch}, step "
        f"{s % steps_per_epoch} (global step {s}), models {models.tolist()}; nothing "
        "after the last checkpoint was saved"
      )

  def save(epoch, step):
    jax.block_until_ready(state)
    check_losses()
    checkpoints.save(
      epoch * steps_per_epoch + step,
      state,
      {"epoch": epoch, "step": step, "history": history, "initial_metric": initial},
    )

  base_key, data_key = jax.random.key(cfg.seed + 1), jax.random.key(cfg.seed + 2)
  ran, start = 0, time.perf_counter()
  seconds_before = history[-1].get("seconds", 0.0) if history else 0.0
  over_budget = lambda: (
    (max_steps is not None and ran >= max_steps)
    or (time_budget is not None and time.perf_counter() - start >= time_budget)
  )
  bar = tqdm(
    total=cfg.max_epochs * steps_per_epoch,
    initial=epoch * steps_per_epoch + step,
    desc=desc,
    disable=not progress,
    leave=False,
  )
  while epoch < cfg.max_epochs and not bool(np.all(np.asarray(state.stopped))):
    if onthefly is None:
      batches = ensemble.epoch_batches(data, epoch)
    else:
      rng = np.random.default_rng([cfg.seed, epoch])
      batches = [(int(w), None) for w in rng.choice(onthefly.widths, steps_per_epoch, p=onthefly.weights)]
    while step < steps_per_epoch:
      width, idx = batches[step]
      global_step = epoch * steps_per_epoch + step
      keys = jax.random.split(jax.random.fold_in(base_key, global_step), n_models)
      if onthefly is None:
        state, loss = ensemble.train_step(state, *ensemble.batch(data, idx, width), keys)
      else:
        data_keys = jax.random.split(jax.random.fold_in(data_key, global_step), n_models)
        state, loss = ensemble.sampled_step(onthefly)(state, data_keys, keys, width=width)
      losses.append((global_step, loss))
      step, ran = step + 1, ran + 1
      bar.update()
      if callback is not None:
        callback(epoch * steps_per_epoch + step)
      if step < steps_per_epoch and (step % cfg.checkpoint_every == 0 or over_budget()):
        save(epoch, step)
      if over_budget() and step < steps_per_epoch:
        bar.close()
        return FitResult(state, history, ran, time.perf_counter() - start, initial)
    jax.block_until_ready(state)
    check_losses()
    val_loss, val_metric = _validated(ensemble, state.params, data, f"epoch {epoch}")
    state = jax.block_until_ready(
      ensemble.end_epoch(state, jnp.asarray(val_loss), jnp.asarray(val_metric), epoch)
    )
    history.append(
      {
        "epoch": epoch,
        "lr_scale": np.asarray(state.plateau.scale).tolist(),
        "val_loss": val_loss.tolist(),
        "val_metric": val_metric.tolist(),
        "stopped": np.asarray(state.stopped).tolist(),
        "seconds": seconds_before + time.perf_counter() - start,
      }
    )
    if on_epoch is not None:
      on_epoch(state, history[-1])
    bar.set_postfix(val=f"{float(np.mean(val_metric)):.4f}")
    epoch, step = epoch + 1, 0
    save(epoch, step)
    if over_budget() or (stop_at is not None and bool(np.all(val_metric <= stop_at))):
      break
  bar.close()
  checkpoints.wait()
  jax.block_until_ready(state)
  return FitResult(state, history, ran, time.perf_counter() - start, initial)


def _validated(ensemble: Ensemble, params, data: EnsembleData, what: str) -> tuple[np.ndarray, np.ndarray]:
  """The ensemble's validation loss and metric per model; NonFiniteError names the models where either is not
  finite."""
  loss, metric = ensemble.validate(params, data)
  bad = np.flatnonzero(~(np.isfinite(loss) & np.isfinite(metric)))
  if bad.size:
    raise NonFiniteError(f"validation loss of {what} is not finite for models {bad.tolist()}")
  return loss, metric


def require_trained(result: FitResult, what: str, workdir) -> None:
  """Raises unless every model finished an epoch: otherwise its best parameters are its initial ones."""
  untrained = np.flatnonzero(np.asarray(result.state.best_epoch) < 0).tolist()
  if untrained:
    raise RuntimeError(
      f"{what}: models {untrained} finished no epoch, so there is nothing trained to export; "
      f"run again to resume the training state in {workdir}"
    )
