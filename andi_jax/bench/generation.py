"""The JAX generators' speed (andi_jax.data.simulate.sample_recipe) against andi-datasets' recipe."""

import itertools

import jax

from andi_jax.bench.measure import median_seconds
from andi_jax.data.recipe import CHUNK_SIZE, MODELS, Recipe, generate, worker_pool
from andi_jax.data.simulate import DeviceRecipe, sample_recipe


def throughput(
  Ts=(100, 1000),
  batch: int = 4096,
  repeats: int = 5,
  andi_n: int = 2000,
  andi_repeats: int = 3,
  workers: int = 2,
  models=MODELS,
) -> list[dict]:
  """Trajectories/s of `sample_recipe` (compiled, median of `repeats`) and of recipe.generate on
  `workers` processes (median of `andi_repeats`), per model and for the mix, 1D, at each T.

  Both sides run the whole recipe (simulate, normalise, noise, factor); JAX also crops and standardises.
  Both are timed warm: the worker processes are started, and have imported andi-datasets, before any
  timing (starting them costs about 1.5 s a call, which would dominate a call of a few thousand).
  andi_n is rounded up to whole chunks for every worker, so that all of them work.
  """
  fn = jax.jit(sample_recipe, static_argnums=(1, 2))
  andi_n = -(-andi_n // (CHUNK_SIZE * workers)) * CHUNK_SIZE * workers
  rows = []
  with worker_pool(workers) as pool:
    generate(Recipe(n=CHUNK_SIZE * workers, T=10, keep=10), pool=pool, progress=False)  # start every worker
    for T in Ts:
      for label, names in [(m, (m,)) for m in models] + [("recipe", tuple(models))]:
        recipe = DeviceRecipe(length=T, T=T, models=names)
        keys, seeds = itertools.count(), itertools.count()  # a fresh key, seed per call; key 0 compiles
        jax_s = median_seconds(lambda: fn(jax.random.key(next(keys)), batch, recipe), repeats)
        andi_s = median_seconds(
          lambda: generate(
            Recipe(n=andi_n, T=T, keep=T, models=names, seed=next(seeds)), pool=pool, progress=False
          ),
          andi_repeats,
          warm_up=False,
        )
        rows.append(
          {
            "model": label,
            "T": T,
            "jax_per_s": batch / jax_s,
            "andi_per_s": andi_n / andi_s,
            "batch": batch,
            "andi_n": andi_n,
            "workers": workers,
            "backend": jax.default_backend(),
          }
        )
  return rows
