"""Per-trajectory preprocessing shared by training and inference (the seed's normalisation)."""

import numpy as np


class UnpredictableTrajectory(ValueError):
  """No model can answer for this trajectory: constant, or not finite once standardised. The one-line
  message names its 0-based index."""


def standardize(x_NxT):
  """Zero mean, unit standard deviation of the positions of each row (seed 001).

  Each row is first scaled by the power of two that brings its largest |position| into [0.5, 1): exact in
  float64, so ordinary data standardise bit for bit as (x - mean) / std, while positions near the float64
  limit cannot overflow the variance nor tiny ones underflow it. A constant row is left at zero rather than
  divided by zero; a row holding inf or NaN comes out not finite.
  """
  x = np.asarray(x_NxT, np.float64)
  with np.errstate(invalid="ignore"):  # inf - inf in a non-finite row
    _, exponent = np.frexp(np.abs(x).max(axis=-1, keepdims=True, initial=0.0))
    x = np.ldexp(x, -exponent)
    x = x - x.mean(axis=-1, keepdims=True)
    std = x.std(axis=-1, keepdims=True)
  return (x / np.where(std > 0, std, 1.0)).astype(np.float32)


def refuse_unpredictable(rows, name) -> None:
  """Raises UnpredictableTrajectory for the first standardised row (non-empty 1D arrays) that is not finite
  or constant (all zero: standardize leaves a constant row there); name(i) says whose row i is."""
  if not len(rows):
    return
  flat = np.concatenate(rows)
  starts = np.cumsum([0] + [len(r) for r in rows[:-1]])
  finite = np.logical_and.reduceat(np.isfinite(flat), starts)
  moving = np.logical_or.reduceat(flat != 0, starts)
  bad = np.flatnonzero(~(finite & moving))
  if len(bad):
    i = bad[0]
    why = "constant (all increments zero)" if finite[i] else "not finite after standardisation"
    raise UnpredictableTrajectory(f"{name(i)}: {why}")


def left_pad(rows, steps):
  """Stacks 1D rows of length <= steps into (N, steps), right-aligned; returns it and the lengths."""
  out = np.zeros((len(rows), steps), np.float32)
  lengths = np.array([len(r) for r in rows], np.int32)
  if len(rows) and lengths.max() > steps:
    raise ValueError(f"a row of length {lengths.max()} does not fit in {steps} steps")
  for i, r in enumerate(rows):
    out[i, steps - len(r) :] = r
  return out, lengths
