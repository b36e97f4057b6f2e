"""Explaining a trained classifier's answers on trajectories: what `andi-jax explain` runs.

Two kinds of classifier checkpoints (meta.json's "method"):
- "all-lengths" with task 2 (train/all_lengths.py: ConvTransformer or ResNet, AnDi's five models):
  each axis is a standardised 1D series; the axes' probabilities are averaged, as in prediction, and
  every axis is explained for the trajectory's class.
- "eight-class" (explain/robustness.py: the seed's ResNet): 2D trajectories only, each axis min-max
  scaled; one heat per point.
Heat is each member's Grad-CAM for the ensemble's class, averaged over the members.
"""

import dataclasses
import os

import jax
import numpy as np

from andi_jax.data import eight_class
from andi_jax.data.preprocess import left_pad, standardize
from andi_jax.explain import plots
from andi_jax.explain.gradcam import GradCAM
from andi_jax.infer import bucket_of
from andi_jax.methods.all_lengths import params_dir
from andi_jax.models import build_model
from andi_jax.models.base import Layer
from andi_jax.train import checkpoint


@dataclasses.dataclass
class Classifier:
  model: object
  params: dict  # stacked over members
  classes: tuple[str, ...]
  plane: bool  # True: 2D trajectories as two channels (eight-class); False: each axis a 1D series

  @classmethod
  def load(cls, path) -> "Classifier":
    meta = checkpoint.read_meta(path)
    method = meta["method"]
    if method == "all-lengths" and meta["task"] != 2:
      raise ValueError(
        f"{path} holds a Task {meta['task']} regression model; Grad-CAM explains a classifier "
        "(a Task 2 or eight-class checkpoint)"
      )
    if method not in ("all-lengths", "eight-class"):
      raise ValueError(
        f"{path}: Grad-CAM needs an all-lengths Task 2 or an eight-class checkpoint, not method {method!r}"
      )
    model, _ = build_model(meta["model"], meta["model_config"])
    params = jax.device_put(checkpoint.load_params(params_dir(path)))
    return cls(model, params, tuple(meta["classes"]), plane=method == "eight-class")

  def rows(self, trajectories):
    """Model inputs for a list of (dim, T) trajectories: x, length, and the trajectory of each row."""
    if self.plane:
      bad = next((i for i, t in enumerate(trajectories) if t.shape[0] != 2), None)
      if bad is not None:
        raise ValueError(
          f"trajectory {bad} is {trajectories[bad].shape[0]}D; this eight-class model reads 2D trajectories"
        )
      length = np.array([t.shape[1] for t in trajectories], np.int32)
      x = np.zeros((len(trajectories), 2, bucket_of(int(length.max()))), np.float32)
      for i, t in enumerate(trajectories):
        x[i, :, x.shape[-1] - t.shape[1] :] = t
      return eight_class.minmax(x, length), length, np.arange(len(trajectories))
    series = [(i, axis) for i, t in enumerate(trajectories) for axis in t]
    x, length = left_pad(
      [standardize(s[None])[0] for _, s in series], bucket_of(max(len(s) for _, s in series))
    )
    return x, length, np.array([i for i, _ in series])


def explain(
  trajectories,
  classifier: Classifier,
  out_dir,
  *,
  layer: Layer | None = None,
  max_figures: int = 50,
  batch_size: int = 256,
) -> dict:
  """Grad-CAM of every trajectory; writes OUT/explained.csv (class and probability per trajectory),
  OUT/trajectory_NNNN.png for the first `max_figures` and OUT/heat_by_class.png. Returns a summary."""
  os.makedirs(out_dir, exist_ok=True)
  cam = GradCAM(classifier.model, layer)
  x, length, owner = classifier.rows(trajectories)
  n = len(trajectories)
  heat_M, row_probs, row_class = cam(classifier.params, x, length, batch_size=batch_size)
  probs = np.zeros((n, row_probs.shape[1]))
  np.add.at(probs, owner, row_probs)
  probs /= np.bincount(owner, minlength=n)[:, None]
  label = probs.argmax(1)  # the trajectory's class: its axes' probabilities averaged
  if np.any(row_class != label[owner]):  # an axis alone says another class: explain all for the trajectory's
    heat_M = cam(classifier.params, x, length, target_N=label[owner], batch_size=batch_size)[0]  # same shapes
  heat = heat_M.mean(0)
  W = x.shape[-1]
  rows_of = [np.flatnonzero(owner == i) for i in range(n)]
  point_heat = [heat[r][:, W - length[r[0]] :] for r in rows_of]  # (axes, T) per trajectory

  with open(os.path.join(out_dir, "explained.csv"), "w") as f:
    f.write("index,dim,length,class,probability\n")
    for i, t in enumerate(trajectories):
      f.write(f"{i},{t.shape[0]},{t.shape[1]},{classifier.classes[label[i]]},{probs[i, label[i]]:.4f}\n")
  for i in range(min(n, max_figures)):
    name = classifier.classes[label[i]]
    plots.trajectory_png(
      os.path.join(out_dir, f"trajectory_{i:04d}.png"),
      trajectories[i],
      point_heat[i],
      f"trajectory {i}: {name} (p = {probs[i, label[i]]:.2f}), Grad-CAM at {cam.layer.module}",
      plane=classifier.plane,
    )
  per_row = [h for ph in point_heat for h in ph]
  row_label = np.concatenate([np.full(len(ph), label[i]) for i, ph in enumerate(point_heat)])
  counts = np.bincount(label, minlength=len(classifier.classes))
  plots.heat_by_class_png(
    os.path.join(out_dir, "heat_by_class.png"),
    plots.heat_profiles(per_row, row_label, len(classifier.classes)),
    classifier.classes,
    counts,
    f"average Grad-CAM heat by predicted class ({cam.layer.module})",
  )
  return {"n": n, "figures": min(n, max_figures), "counts": dict(zip(classifier.classes, counts.tolist()))}
