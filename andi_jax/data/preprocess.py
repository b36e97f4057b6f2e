"""Per-trajectory preprocessing shared by training and inference (the seed's normalisation)."""

import numpy as np


def standardize(x_NxT):
  """Zero mean, unit standard deviation of the positions of each row (seed 001).

  A constant row (standard deviation 0) is left at zero rather than divided by zero.
  """
  x = np.asarray(x_NxT, np.float64)
  x = x - x.mean(axis=-1, keepdims=True)
  std = x.std(axis=-1, keepdims=True)
  return (x / np.where(std > 0, std, 1.0)).astype(np.float32)


def left_pad(rows, steps):
  """Stacks 1D rows of length <= steps into (N, steps), right-aligned; returns it and the lengths."""
  out = np.zeros((len(rows), steps), np.float32)
  lengths = np.array([len(r) for r in rows], np.int32)
  if len(rows) and lengths.max() > steps:
    raise ValueError(f"a row of length {lengths.max()} does not fit in {steps} steps")
  for i, r in enumerate(rows):
    out[i, steps - len(r):] = r
  return out, lengths
