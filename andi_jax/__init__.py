"""andi-jax: anomalous-diffusion inference (AnDi Tasks 1-2) with ensembles of models trained together.

Importing the package changes nothing in the process: entry points call `andi_jax.runtime.configure()`
before JAX starts (ARCHITECTURE.md).
"""

__version__ = "0.1.0"
