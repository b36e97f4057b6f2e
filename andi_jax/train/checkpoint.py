"""orbax-checkpoint: resumable training state, and exported best parameters for inference."""

import hashlib
import json
import os
import textwrap

import jax
import orbax.checkpoint as ocp


class CheckpointError(ValueError):
  """A checkpoint directory is missing, damaged or not andi-jax's: the message names the path and what is
  wrong."""


def manager(workdir) -> ocp.CheckpointManager:
  # Synchronous saves: the training step donates the state's buffers right after a save.
  options = ocp.CheckpointManagerOptions(max_to_keep=2, enable_async_checkpointing=False)
  return ocp.CheckpointManager(os.path.abspath(workdir), options=options)


def save_train(mgr: ocp.CheckpointManager, step: int, state, progress: dict) -> None:
  mgr.save(
    step,
    args=ocp.args.Composite(state=ocp.args.StandardSave(state), progress=ocp.args.JsonSave(progress)),
    force=True,
  )


def restore_train(mgr: ocp.CheckpointManager, like_state):
  """Latest saved state (structured like `like_state`) and its progress record."""
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like_state)
  out = mgr.restore(
    mgr.latest_step(),
    args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), progress=ocp.args.JsonRestore()),
  )
  return out.state, out.progress


MANIFEST = "sha256.json"  # inside a params directory: {"sha256": {file relative to it: hex digest}}
RETRY = "re-export or re-train"


def _sha256(file) -> str:
  with open(file, "rb") as f:
    return hashlib.file_digest(f, "sha256").hexdigest()


def save_params(path, params) -> None:
  """Parameters to the orbax directory `path`, then the sha256 of every file orbax wrote there (MANIFEST,
  replaced atomically: a crash leaves no manifest rather than a torn one)."""
  path = os.path.abspath(path)
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(path, params, force=True)
  sums = {
    os.path.relpath(os.path.join(root, name), path): _sha256(os.path.join(root, name))
    for root, _, names in os.walk(path)
    for name in names
  }
  tmp = os.path.join(path, MANIFEST + ".tmp")
  with open(tmp, "w") as f:
    json.dump({"sha256": dict(sorted(sums.items()))}, f, indent=1)
  os.replace(tmp, os.path.join(path, MANIFEST))


def _verify(path) -> None:
  """Raises CheckpointError for the first file of path's manifest that is missing or differs from it."""
  manifest = os.path.join(path, MANIFEST)
  if not os.path.exists(manifest):
    return  # saved before manifests existed: orbax alone judges it
  try:
    with open(manifest, "rb") as f:
      sums = json.loads(f.read())["sha256"]
    if not isinstance(sums, dict):
      raise TypeError("'sha256' is not an object")
  except (OSError, ValueError, KeyError, TypeError) as e:  # ValueError covers bad UTF-8 and bad JSON
    raise CheckpointError(f"{manifest} is damaged ({type(e).__name__}: {e}): {RETRY}") from None
  for name, digest in sorted(sums.items()):
    file = os.path.join(path, name)
    if not os.path.isfile(file):
      raise CheckpointError(f"{file} is missing: {RETRY}")
    if _sha256(file) != digest:
      raise CheckpointError(f"{file} is damaged (checksum mismatch): {RETRY}")


def load_params(path):
  """Parameters saved by save_params, checked against its manifest first; any failure is a CheckpointError
  naming the path."""
  path = os.path.abspath(path)
  if not os.path.isdir(path):
    raise CheckpointError(f"{path} is missing (no saved parameters there): {RETRY}")
  _verify(path)
  try:
    with ocp.StandardCheckpointer() as ckptr:
      return ckptr.restore(path)
  except Exception as e:  # orbax and tensorstore raise many types; each means this directory is unusable
    reason = textwrap.shorten((str(e).splitlines() or [""])[0].split(" [")[0], 240, placeholder=" ...")
    raise CheckpointError(f"{path} cannot be restored ({type(e).__name__}: {reason}): {RETRY}") from None


def write_meta(outdir, meta: dict) -> None:
  """outdir/meta.json, replaced atomically: a crash never leaves a torn description of the models."""
  os.makedirs(outdir, exist_ok=True)
  tmp = os.path.join(outdir, "meta.json.tmp")
  with open(tmp, "w") as f:
    json.dump(meta, f, indent=1)
  os.replace(tmp, os.path.join(outdir, "meta.json"))


def read_meta(outdir, *required: str) -> dict:
  """outdir/meta.json as a dict holding the `required` keys, or a CheckpointError naming what is wrong."""
  path = os.path.join(outdir, "meta.json")
  if not os.path.isfile(path):
    raise CheckpointError(f"{outdir} is not an andi-jax checkpoint directory: {path} is missing")
  try:
    with open(path, "rb") as f:
      text = f.read().decode("utf-8")
    meta = json.loads(text)
  except OSError as e:
    raise CheckpointError(f"{path} cannot be read ({e.strerror})") from None
  except UnicodeDecodeError:
    raise CheckpointError(f"{path} is damaged (not UTF-8 text): {RETRY}") from None
  except json.JSONDecodeError as e:
    why = "empty" if not text.strip() else f"not JSON: {e.msg}, line {e.lineno} column {e.colno}"
    raise CheckpointError(f"{path} is damaged ({why}): {RETRY}") from None
  if not isinstance(meta, dict):
    raise CheckpointError(f"{path} is damaged (not a JSON object): {RETRY}")
  missing = [key for key in required if key not in meta]
  if missing:
    raise CheckpointError(f"{path} lacks {', '.join(map(repr, missing))}: damaged or not andi-jax's")
  return meta
