"""Matplotlib for the figures, which are written to files only."""


def pyplot():
  """matplotlib.pyplot on the Agg backend (no display needed), imported on first use."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  return plt
