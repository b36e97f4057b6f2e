"""andi-jax: anomalous-diffusion inference (AnDi Tasks 1-2) with ensembles of models trained together."""

__version__ = "0.1.0"
