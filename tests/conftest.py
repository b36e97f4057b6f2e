import atexit
import os
import shutil
import tempfile

import numpy as np
import pytest

# One XLA compilation cache for the session, shared by the xdist workers and the CLI subprocesses (they
# inherit the environment): many tests compile the same programs from fresh closures. Set before JAX
# starts, removed by the process that made it.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="andi-jax-xla-cache-")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.3")
  atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)

from andi_jax import runtime  # noqa: E402

runtime.configure()  # one host device per core, before JAX starts


def walks(n, length, alpha, seed=0):
  """Standardised random walks whose increments scale like t^((alpha-1)/2): a cheap alpha signal."""
  rng = np.random.default_rng(seed)
  steps = rng.normal(size=(n, length)) * np.arange(1, length + 1) ** ((alpha[:, None] - 1) / 2)
  x = np.cumsum(steps, axis=1)
  return ((x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)).astype(np.float32)


@pytest.fixture
def toy_alpha_data():
  rng = np.random.default_rng(0)
  alpha = rng.uniform(0.1, 1.9, 1280).astype(np.float32)
  return walks(len(alpha), 20, alpha), alpha
