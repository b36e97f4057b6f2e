"""Trajectory data: the AnDi challenge recipe, file formats, per-trajectory preprocessing."""
