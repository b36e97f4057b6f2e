"""andi-jax: anomalous-diffusion inference (AnDi Tasks 1-2) with ensembles of models trained together."""

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

__version__ = "0.1.0"
