"""Runs a model exported by `andi-jax export` on a challenge-format file, with numpy and onnxruntime only
(ONNX), or numpy and jax without andi_jax (StableHLO). Copied into every export; short on purpose, to be
read and ported.

  python run_export.py EXPORT_DIR task1.txt --out pred.txt

Input: lines `dim;x_1;...;x_T;y_1;...;y_T` (one trajectory each, the axes one after another). Output, as
`andi-jax predict`: `dim;alpha` lines (Task 1; with a standard error table, also OUT.se.csv:
dim,alpha,alpha_se) or `dim;label` lines and OUT.proba.csv: dim,label,<class probabilities> (Task 2).

The steps the graphs do not contain, as export.json writes them down:
1. Each axis of each trajectory is a 1D series, standardised on its own: scaled by the power of two that
   brings its largest |x| into [0.5, 1), minus its mean, over its standard deviation (float64, then
   float32). A constant or non-finite series has no answer: the run stops naming it.
2. Per-length exports (the seed-001 rule): a series of T points uses the graph of the longest trained length
   T_n <= T; when T_n < T, the mean of the graph on its first and on its last T_n points, each window
   standardised on its own. All-lengths exports: the graph of the narrowest width >= T.
3. Series are left-padded with zeros to the graph's width; `length` holds their real points.
4. Task 1: alpha = clip(mean over the axes of the series' outputs x scale, clip). Task 2: the class
   probabilities averaged over the axes; the label is the index of the largest.
"""

import argparse
import json
import os
import sys
import tempfile

import numpy as np


def standardize(x):
  _, exponent = np.frexp(np.abs(x).max(initial=0.0))
  x = np.ldexp(np.asarray(x, np.float64), -exponent)
  x = x - x.mean()
  std = x.std()
  return (x / (std if std > 0 else 1.0)).astype(np.float32)


def checked(series, where):
  z = standardize(series)
  if not np.isfinite(z).all():
    sys.exit(f"error: {where}: not finite after standardisation")
  if not z.any():
    sys.exit(f"error: {where}: constant (all increments zero)")
  return z


class Graphs:
  """The export's graphs by width, each called as graph(x (B, W) float32, length (B,) int32) -> outputs."""

  def __init__(self, path, meta):
    self.widths = sorted(int(w) for w in meta["graphs"])
    files = {int(w): os.path.join(path, f) for w, f in meta["graphs"].items()}
    if meta["format"] == "onnx":
      import onnxruntime

      sessions = {
        w: onnxruntime.InferenceSession(f, providers=["CPUExecutionProvider"]) for w, f in files.items()
      }
      self.call = lambda w, x, n: sessions[w].run(None, {"x": x, "length": n})[0]
    else:
      from jax import export

      graphs = {}
      for w, f in files.items():
        with open(f, "rb") as fh:
          graphs[w] = export.deserialize(bytearray(fh.read()))
      self.call = lambda w, x, n: np.asarray(graphs[w].call(x, n))


def predict(path, trajectories, batch_size=1024):
  """Task 1: alpha (N,); Task 2: class probabilities (N, C). trajectories: (dim, T) float arrays."""
  with open(os.path.join(path, "export.json")) as f:
    meta = json.load(f)
  graphs = Graphs(path, meta)
  per_length = meta["graph_per"] == "trained length"
  jobs = {}  # width -> list of (trajectory, axis weight, standardised row)
  for i, traj in enumerate(trajectories):
    for a, axis in enumerate(traj):
      where = f"trajectory {i}" + (f" (axis {a})" if len(traj) > 1 else "")
      T = len(axis)
      fits = [w for w in graphs.widths if (w <= T if per_length else w >= T)]
      if not fits:
        sys.exit(f"error: {where}: {T} points, outside the exported widths {graphs.widths}")
      w = fits[-1] if per_length else fits[0]
      windows = [(0, T)] if not per_length or w == T else [(0, w), (T - w, T)]
      for start, stop in windows:
        name = where if len(windows) == 1 else f"{where} points {start}-{stop - 1}"
        row = checked(axis[start:stop], name)
        jobs.setdefault(w, []).append((i, 1.0 / (len(traj) * len(windows)), row))
  classes = meta["classes"]
  out = np.zeros((len(trajectories), len(classes)) if classes else len(trajectories))
  for w, rows in jobs.items():
    x = np.zeros((len(rows), w), np.float32)
    n = np.array([len(r) for _, _, r in rows], np.int32)
    for k, (_, _, r) in enumerate(rows):
      x[k, w - len(r) :] = r
    y = np.concatenate(
      [graphs.call(w, x[s : s + batch_size], n[s : s + batch_size]) for s in range(0, len(x), batch_size)]
    )
    for (i, weight, _), value in zip(rows, y):
      out[i] += weight * value
  return out if classes else np.clip(out * meta["scale"], *meta["clip"])


def standard_error(meta, dims, lengths, alpha):
  cal = meta["calibration"]
  lb = np.clip(
    np.searchsorted(cal["length_edges"], lengths, side="right") - 1, 0, len(cal["length_edges"]) - 2
  )
  ab = np.clip(np.searchsorted(cal["alpha_edges"], alpha, side="right") - 1, 0, len(cal["alpha_edges"]) - 2)
  return np.array([cal["se"][str(d)][l][a] for d, l, a in zip(dims, lb, ab)])


def read_challenge(path):
  trajectories = []
  with open(path) as f:
    for i, line in enumerate(f, 1):
      try:
        dim, *values = line.strip().split(";")
        trajectories.append(np.array(values, np.float64).reshape(int(float(dim)), -1))
      except ValueError as e:
        sys.exit(f"error: {path}: line {i}: {e}")
  return trajectories


def write(path, lines):
  """Into a temp file that replaces `path` only when whole."""
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".tmp-")
  with os.fdopen(fd, "w") as f:
    f.writelines(line + "\n" for line in lines)
  os.replace(tmp, path)


def cell(v):
  return f"{v:.6g}" if isinstance(v, float) else str(v)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("export_dir")
  p.add_argument("input", help="challenge-format trajectories (.txt)")
  p.add_argument("--out", required=True, help="the predictions, in the challenge format")
  args = p.parse_args(argv)
  with open(os.path.join(args.export_dir, "export.json")) as f:
    meta = json.load(f)
  trajectories = read_challenge(args.input)
  pred = predict(args.export_dir, trajectories)
  dims = [len(t) for t in trajectories]
  side = os.path.splitext(args.out)[0]
  if meta["classes"]:
    write(args.out, [f"{d};{k}" for d, k in zip(dims, pred.argmax(1).tolist())])
    rows = [[d, k, *p] for d, k, p in zip(dims, pred.argmax(1).tolist(), pred.tolist())]
    write(
      side + ".proba.csv",
      [",".join(["dim", "label", *meta["classes"]])] + [",".join(map(cell, r)) for r in rows],
    )
  else:
    write(args.out, [f"{d};{a:.4f}" for d, a in zip(dims, pred.tolist())])
    if meta.get("calibration"):
      se = standard_error(meta, dims, [t.shape[1] for t in trajectories], pred)
      rows = [",".join(map(cell, r)) for r in zip(dims, pred.tolist(), se.tolist())]
      write(side + ".se.csv", ["dim,alpha,alpha_se"] + rows)
  print(f"wrote {len(pred)} predictions to {args.out}")


if __name__ == "__main__":
  main()
