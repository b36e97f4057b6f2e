"""Process set-up for andi-jax's entry points: configure() before JAX starts, never at import.

The CLI, the tests' conftest, the experiments and the benchmarks call it first; a library user may too.
"""

import functools
import os
import sys


def configure() -> None:
  """One XLA host device per core (with a patient collective timeout) and the unrolled threefry lowering.

  XLA's CPU backend spreads the ensemble's many small per-model products poorly over cores; one host
  device per core, with the batch sharded over them (train/engine.py), uses them all. The flag acts only
  before JAX starts its backends, and touches the host platform only (harmless on GPU machines). With as
  many devices as cores, one device's thread can wait minutes for a core while another process runs; XLA
  aborts a cross-device all-reduce whose partner is 40 s late, so the wait is allowed an hour.
  Idempotent; the flags are left alone where the environment already sets a device count.
  """
  if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    if "jax" in sys.modules:
      from jax._src import xla_bridge

      if xla_bridge.backends_are_initialized():
        raise RuntimeError("andi_jax.runtime.configure() must run before JAX starts its backends")
    os.environ["XLA_FLAGS"] = (
      os.environ.get("XLA_FLAGS", "")
      + f" --xla_force_host_platform_device_count={os.cpu_count() or 1}"
      + " --xla_cpu_collective_call_terminate_timeout_seconds=3600"
      + " --xla_cpu_collective_call_warn_stuck_timeout_seconds=600"
    ).strip()
  _unrolled_threefry_on_cpu()


@functools.cache
def _unrolled_threefry_on_cpu() -> None:
  """Lowers threefry on CPU as jax does elsewhere, its 20 rounds unrolled, instead of a loop of 5 trips.

  The bits are the same. Jax rolls the loop on CPU to compile faster, but each trip then reads and writes
  whole counter arrays, and the on-device generator (data/simulate.py) is mostly random draws. A jax
  without this private function keeps its own lowering.
  """
  try:
    from jax._src.random.threefry2x32 import _threefry2x32_lowering
  except ImportError:
    return
  from jax.extend.random import threefry2x32_p
  from jax.interpreters import mlir

  rule = functools.partial(_threefry2x32_lowering, use_rolled_loops=False)
  mlir.register_lowering(threefry2x32_p, mlir.lower_fun(rule, multiple_results=True), platform="cpu")


def with_huge_pages(argv) -> None:
  """Re-executes this process with glibc's transparent-huge-page option, unless already set.

  XLA allocates large, short-lived buffers every step; first-touch page faults on them cost about a fifth
  of LSTM training time (benchmarks/RESULTS.md). glibc reads the option at start-up only.
  """
  tunables = os.environ.get("GLIBC_TUNABLES", "")
  if sys.platform == "linux" and "glibc.malloc.hugetlb" not in tunables:
    env = dict(os.environ, GLIBC_TUNABLES=":".join(filter(None, [tunables, "glibc.malloc.hugetlb=1"])))
    os.execve(sys.executable, [sys.executable, *argv], env)
