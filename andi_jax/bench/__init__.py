"""Benchmarks: timed measurements of the library (measure), the suite that writes RESULTS.md (suite), the
original PyTorch method (torch_reference) and the generators' speed (generation)."""
