"""Challenge-recipe training batches generated inside the jitted step (andi_jax.data.simulate).

Unbounded fresh data and no disk: each step simulates its batch at T=1000 on the device, with the same
recipe, preprocessing and left padding as the stored datasets, so any engine-trained model can use it.
"""

import jax.numpy as jnp
import numpy as np

from andi_jax.data.simulate import DeviceRecipe, crop_standardize, sample_recipe
from andi_jax.train.engine import OnTheFly


def _target(batch, task: int):
  return batch.alpha if task == 1 else batch.model


def per_length_sampler(task: int, member_lengths, streams: int | None = None) -> OnTheFly:
  """Member m of the ensemble trains on recipe trajectories of member_lengths[m] points, left-padded to
  the longest: simulated at the longest length, each member's prefix re-standardised. streams: see
  OnTheFly (None: one per member)."""
  width = max(member_lengths)
  recipe, lengths = DeviceRecipe(length=width), jnp.asarray(member_lengths, jnp.int32)

  def view(b, w, member):
    length = jnp.full(b.alpha.shape, lengths[member])
    # standardisation is affine, so standardising a standardised prefix equals standardising the raw one
    return crop_standardize(b.x[:, None], length, width)[:, 0], length, _target(b, task)

  return OnTheFly(
    lambda key, w, rows: sample_recipe(key, rows, recipe),
    view,
    (width,),
    padding_waste=1 - float(np.mean(member_lengths)) / width,
    streams=streams,
  )


def bucket_lengths(widths, min_length: int = 10, max_length: int = 999) -> dict[int, tuple[int, int]]:
  """The lengths (lo, hi) that each bucket width holds: those up to the width and past the previous one."""
  spans, lo = {}, min_length
  for w in widths:
    hi = min(w, max_length)
    if lo <= hi:
      spans[w] = (lo, hi)
    lo = max(lo, w + 1)
  return spans


def bucket_sampler(
  task: int, widths, min_length: int = 10, max_length: int = 999, streams: int | None = None
) -> OnTheFly:
  """Lengths uniform in min_length..max_length cut into the `widths` buckets; each step fills one bucket,
  drawn with the bucket's share of the lengths, so the length law is the recipe's uniform one. streams:
  see OnTheFly (None: one per member)."""
  recipes = {
    w: DeviceRecipe(length=span) for w, span in bucket_lengths(widths, min_length, max_length).items()
  }
  spans = np.array([r.length[1] - r.length[0] + 1 for r in recipes.values()], float)
  weights = spans / spans.sum()
  mean_length = sum(p * (r.length[0] + r.length[1]) / 2 for p, r in zip(weights, recipes.values()))

  def simulate(key, width, rows):
    recipe = recipes[width]
    b = sample_recipe(key, rows, recipe)
    return jnp.pad(b.x, ((0, 0), (width - recipe.width, 0))), b.length, _target(b, task)

  return OnTheFly(
    simulate,
    lambda batch, width, member: batch,
    tuple(recipes),
    tuple(weights),
    padding_waste=1 - mean_length / float(np.dot(weights, list(recipes))),
    streams=streams,
  )
