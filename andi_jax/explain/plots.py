"""Figures of Grad-CAM heat: one trajectory coloured by its heat, and the average heat by class."""

import numpy as np

from andi_jax.plotting import pyplot

BINS = 50  # relative-time bins of the by-class summary


def _coloured_line(ax, u, v, heat, norm, cmap):
  from matplotlib.collections import LineCollection

  points = np.stack([u, v], 1)
  segments = np.stack([points[:-1], points[1:]], 1)
  lines = LineCollection(segments, cmap=cmap, norm=norm, linewidth=1.6)
  lines.set_array((heat[:-1] + heat[1:]) / 2)
  ax.add_collection(lines)
  ax.autoscale()
  return lines


def relative(heat_T):
  """Heat scaled to a maximum of 1 (all zeros stay zeros)."""
  peak = heat_T.max()
  return heat_T / peak if peak > 0 else heat_T


def trajectory_png(path, traj_DxT, heat_DxT, title: str, plane: bool):
  """A trajectory coloured by heat (each trajectory's heat scaled to max 1): the path in the plane when
  `plane` (one heat per point), else each axis against time (one heat per axis and point)."""
  plt = pyplot()
  from matplotlib.colors import Normalize

  norm, cmap = Normalize(0, 1), "inferno"
  if plane:
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    lines = _coloured_line(ax, traj_DxT[0], traj_DxT[1], relative(heat_DxT[0]), norm, cmap)
    ax.plot(*traj_DxT[:, 0], "o", color="tab:green", ms=4, label="start")
    ax.set(xlabel="x", ylabel="y", aspect="equal")
    ax.legend(loc="best", fontsize=7)
    axes = [ax]
  else:
    fig, axes = plt.subplots(
      len(traj_DxT), 1, figsize=(6, 1.8 + 1.3 * len(traj_DxT)), sharex=True, squeeze=False
    )
    axes = axes[:, 0]
    t = np.arange(traj_DxT.shape[1])
    for d, ax in enumerate(axes):
      lines = _coloured_line(ax, t, traj_DxT[d], relative(heat_DxT[d]), norm, cmap)
      ax.set_ylabel("xyz"[d])
    axes[-1].set_xlabel("t")
  axes[0].set_title(title, fontsize=9)
  fig.colorbar(lines, ax=list(axes), label="Grad-CAM heat (relative)")
  fig.savefig(path, dpi=110)
  plt.close(fig)


def heat_profiles(heat_rows, classes_N, n_classes: int) -> np.ndarray:
  """Mean relative heat by class over relative time t / L in BINS bins, (n_classes, BINS); NaN where a
  class has no row. heat_rows: one 1D heat array per row (its points only)."""
  sums, counts = np.zeros((n_classes, BINS)), np.zeros((n_classes, BINS))
  for heat, c in zip(heat_rows, classes_N):
    b = np.minimum(np.arange(len(heat)) * BINS // len(heat), BINS - 1)
    sums[c] += np.bincount(b, relative(heat), BINS)
    counts[c] += np.bincount(b, minlength=BINS)
  with np.errstate(invalid="ignore"):
    return sums / counts


def heat_by_class_png(path, profiles, class_names, counts, title: str):
  """One line per class: mean relative heat against relative time."""
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(6.4, 4))
  centres = (np.arange(BINS) + 0.5) / BINS
  for c, name in enumerate(class_names):
    if counts[c]:
      ax.plot(centres, profiles[c], label=f"{name} (n={counts[c]})")
  ax.set(xlabel="relative time t / L", ylabel="mean relative Grad-CAM heat", ylim=(0, None), title=title)
  ax.legend(fontsize=7, ncol=2)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
