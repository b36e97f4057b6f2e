"""The trained models installed with the package, one directory each (made by experiments/pretrain.py):
  task1/  alpha (AnDi Task 1) with a calibrated standard error
  task2/  the diffusion model (Task 2) with the five class probabilities
Each holds meta.json, models/all/ (parameters and their sha256 manifest) and its generated model card
(MODEL_CARD.md, card.json, figures).
"""

import json
import os

from andi_jax.train.checkpoint import CheckpointError

DIR = os.path.dirname(os.path.abspath(__file__))
NAMES = {1: "task1", 2: "task2"}
REINSTALL = 'reinstall andi-jax (in a clone: pip install -e ".[test]")'


def path(task: int) -> str:
  return os.path.join(DIR, NAMES[task])


def load(task: int):
  """The shipped model of `task` as a predictor (andi_jax.infer); CheckpointError, saying which file and how
  to reinstall, when it is missing or damaged."""
  from andi_jax import infer

  where = path(task)
  try:
    return infer.load(where)
  except (CheckpointError, OSError, ValueError, KeyError) as e:
    raise CheckpointError(f"the shipped Task {task} model is missing or damaged ({e}); {REINSTALL}") from None


def card(task: int) -> dict:
  """The model card's figures (card.json) of the shipped model of `task`."""
  file = os.path.join(path(task), "card.json")
  try:
    with open(file) as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise CheckpointError(f"{file}: cannot read the model card ({e}); {REINSTALL}") from None


def size_bytes(task: int) -> int:
  """Bytes of the shipped model's directory, card and figures included."""
  return sum(
    os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path(task)) for name in names
  )
