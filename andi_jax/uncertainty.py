"""A standard error for each predicted alpha: the model's error on held-out trajectories like it.

The table holds the root mean square of (predicted - true) alpha per (dimension, length bin, predicted-alpha
bin), measured on a calibration set the model never trained on. Errors shrink with length and vary with
alpha (a walk near ballistic is told from others more easily), so one number per length would over- or
under-cover by alpha. A cell with fewer than MIN_COUNT calibration rows takes its length bin's value, and a
length bin with fewer, the value of all rows.
"""

import numpy as np

LENGTH_EDGES = (10, 20, 30, 50, 75, 100, 150, 250, 400, 600, 1000)
ALPHA_EDGES = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)
MIN_COUNT = 50


def _cells(pred, lengths, length_edges, alpha_edges):
  lb = np.clip(np.searchsorted(length_edges, lengths, side="right") - 1, 0, len(length_edges) - 2)
  ab = np.clip(np.searchsorted(alpha_edges, pred, side="right") - 1, 0, len(alpha_edges) - 2)
  return lb, ab


def fit_table(pred, true, lengths, length_edges=LENGTH_EDGES, alpha_edges=ALPHA_EDGES) -> np.ndarray:
  """(length bins, alpha bins) RMS error of pred against true."""
  pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
  lb, ab = _cells(pred, np.asarray(lengths), length_edges, alpha_edges)
  shape = (len(length_edges) - 1, len(alpha_edges) - 1)
  sq, count = np.zeros(shape), np.zeros(shape)
  np.add.at(sq, (lb, ab), (pred - true) ** 2)
  np.add.at(count, (lb, ab), 1)
  if len(pred) < MIN_COUNT:
    raise ValueError(f"{len(pred)} calibration rows; at least {MIN_COUNT} are needed")
  overall = np.sqrt(sq.sum() / count.sum())
  rows = count.sum(1)
  by_length = np.where(rows >= MIN_COUNT, np.sqrt(sq.sum(1) / np.maximum(rows, 1)), overall)
  return np.where(count >= MIN_COUNT, np.sqrt(sq / np.maximum(count, 1)), by_length[:, None])


def lookup(table, pred, lengths, length_edges=LENGTH_EDGES, alpha_edges=ALPHA_EDGES) -> np.ndarray:
  """The table's standard error for each (pred, length); lengths beyond the edges take the end bins."""
  lb, ab = _cells(np.asarray(pred, np.float64), np.asarray(lengths), length_edges, alpha_edges)
  return np.asarray(table)[lb, ab]


def coverage(pred, true, se, k: float = 1.0) -> float:
  """Fraction of rows whose true value lies within k standard errors of the prediction."""
  return float(np.mean(np.abs(np.asarray(pred) - np.asarray(true)) <= k * np.asarray(se)))
