"""orbax-checkpoint: resumable training state, and exported best parameters for inference."""

import json
import os

import jax
import orbax.checkpoint as ocp


def manager(workdir) -> ocp.CheckpointManager:
  # Synchronous saves: the training step donates the state's buffers right after a save.
  options = ocp.CheckpointManagerOptions(max_to_keep=2, enable_async_checkpointing=False)
  return ocp.CheckpointManager(os.path.abspath(workdir), options=options)


def save_train(mgr: ocp.CheckpointManager, step: int, state, progress: dict) -> None:
  mgr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                         progress=ocp.args.JsonSave(progress)), force=True)


def restore_train(mgr: ocp.CheckpointManager, like_state):
  """Latest saved state (structured like `like_state`) and its progress record."""
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like_state)
  out = mgr.restore(mgr.latest_step(), args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract), progress=ocp.args.JsonRestore()))
  return out.state, out.progress


def save_params(path, params) -> None:
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(os.path.abspath(path), params, force=True)


def load_params(path):
  with ocp.StandardCheckpointer() as ckptr:
    return ckptr.restore(os.path.abspath(path))


def write_meta(outdir, meta: dict) -> None:
  """outdir/meta.json, replaced atomically: a crash never leaves a torn description of the models."""
  os.makedirs(outdir, exist_ok=True)
  tmp = os.path.join(outdir, "meta.json.tmp")
  with open(tmp, "w") as f:
    json.dump(meta, f, indent=1)
  os.replace(tmp, os.path.join(outdir, "meta.json"))


def read_meta(outdir) -> dict:
  path = os.path.join(outdir, "meta.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{outdir} is not an andi-jax checkpoint directory: {path} is missing")
  with open(path) as f:
    return json.load(f)
