"""Challenge metrics, per-length-bucket reports, and the classical TAMSD estimate of alpha."""

import numpy as np

LENGTH_BUCKETS = ((10, 50), (50, 100), (100, 500), (500, 1000))


def mae(pred, true) -> float:
  return float(np.mean(np.abs(np.asarray(pred, np.float64) - np.asarray(true, np.float64))))


def confusion(pred, true, n_classes: int) -> np.ndarray:
  """(true, predicted) counts."""
  out = np.zeros((n_classes, n_classes), np.int64)
  np.add.at(out, (np.asarray(true, int), np.asarray(pred, int)), 1)
  return out


def f1_micro(pred, true) -> float:
  """Micro-averaged F1, the Task 2 metric; for single-label classes it equals accuracy."""
  return float(np.mean(np.asarray(pred, int) == np.asarray(true, int)))


def f1_per_class(pred, true, n_classes: int) -> np.ndarray:
  """F1 of each class (n_classes,); a class never predicted nor present scores 0."""
  counts = confusion(pred, true, n_classes)
  hits = np.diag(counts).astype(np.float64)
  denominator = counts.sum(0) + counts.sum(1)  # predicted + true: 2 TP + FP + FN
  return np.divide(2 * hits, denominator, out=np.zeros(n_classes), where=denominator > 0)


def f1_macro(pred, true, n_classes: int) -> float:
  """Unweighted mean of the per-class F1 scores."""
  return float(np.mean(f1_per_class(pred, true, n_classes)))


def by_length(metric, pred, true, lengths, buckets=LENGTH_BUCKETS) -> list[dict]:
  """metric overall and per [lo, hi) length bucket, with the count in each."""
  pred, true, lengths = np.asarray(pred), np.asarray(true), np.asarray(lengths)
  rows = [{"bucket": "all", "n": len(true), "value": metric(pred, true)}]
  for lo, hi in buckets:
    sel = (lengths >= lo) & (lengths < hi)
    rows.append(
      {
        "bucket": f"[{lo},{hi})",
        "n": int(sel.sum()),
        "value": metric(pred[sel], true[sel]) if sel.any() else float("nan"),
      }
    )
  return rows


def tamsd_alpha(x, lags=None, clip=(0.05, 2.0), still=-np.inf):
  """Classical estimate: slope of log TAMSD against log lag, clipped to `clip` (None: unclipped).

  x: one trajectory (dim, T) or (T,), giving a float, or a batch (n, dim, T), giving (n,); the TAMSD sums
  the squared displacements over dimensions. lags: 1..max(3, T // 10) by default. A trajectory that never
  moves has slope `still` (before the clip: by default the lower bound).
  """
  x = np.asarray(x, np.float64)
  rows = x if x.ndim == 3 else np.atleast_2d(x)[None]
  T = rows.shape[-1]
  lags = np.arange(1, max(3, T // 10) + 1) if lags is None else np.asarray(lags)
  msd = np.stack(
    [np.mean(np.sum((rows[..., lag:] - rows[..., :-lag]) ** 2, axis=1), axis=-1) for lag in lags], 1
  )
  moved = np.all(msd > 0, axis=1)
  log_lag = np.log(lags) - np.mean(np.log(lags))
  slope = np.where(moved, np.log(np.where(moved[:, None], msd, 1)) @ log_lag / np.sum(log_lag**2), still)
  if clip is not None:
    slope = np.clip(slope, *clip)
  return slope if x.ndim == 3 else float(slope[0])
