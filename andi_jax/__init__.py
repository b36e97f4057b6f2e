"""andi-jax: anomalous-diffusion inference (AnDi Tasks 1-2) with ensembles of models trained together."""

import functools
import os
import sys

# XLA's CPU backend spreads the ensemble's many small per-model products poorly over cores; one host
# device per core, with the batch sharded over them (train/engine.py), uses them all. Only possible
# before JAX starts, and harmless on GPU machines (it touches the host platform only).
# With as many devices as cores, one device's thread can wait minutes for a core while another process
# runs; XLA aborts a cross-device all-reduce whose partner is 40 s late (it killed a benchmark run an
# hour in), so the wait is allowed an hour.
if "jax" not in sys.modules and "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                             + f" --xla_force_host_platform_device_count={os.cpu_count() or 1}"
                             + " --xla_cpu_collective_call_terminate_timeout_seconds=3600"
                             + " --xla_cpu_collective_call_warn_stuck_timeout_seconds=600").strip()


def _unrolled_threefry_on_cpu():
  """Lower threefry on CPU as jax does elsewhere, its 20 rounds unrolled, instead of a loop of 5 trips.

  The bits are the same. Jax rolls the loop on CPU to compile faster, but each trip then reads and writes
  whole counter arrays: 1.3M normals took 18-20 ms rolled against 6-9 ms unrolled (2 cores, 2026-12-02),
  and the on-device generator (data/simulate.py) is mostly random draws. Stored-array training steps with
  dropout were unchanged. A jax without this private function keeps its own lowering.
  """
  try:  # jax starts here, after the flags above
    from jax._src.random.threefry2x32 import _threefry2x32_lowering
  except ImportError:
    return
  from jax.extend.random import threefry2x32_p
  from jax.interpreters import mlir
  rule = functools.partial(_threefry2x32_lowering, use_rolled_loops=False)
  mlir.register_lowering(threefry2x32_p, mlir.lower_fun(rule, multiple_results=True), platform="cpu")


_unrolled_threefry_on_cpu()

__version__ = "0.1.0"
