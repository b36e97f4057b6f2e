"""The benchmark suite (andi_jax/bench/suite.py); writes benchmarks/RESULTS.md, results.json, results.png.

  python benchmarks/run.py [--quick | --mode medium | --mode full]   # = `andi-jax benchmark all ...`

Run it alone: a figure taken while anything else runs on the machine is void.
"""

import os
import sys

from andi_jax import runtime
from andi_jax.cli import main

if __name__ == "__main__":
  runtime.with_huge_pages(sys.argv)  # the benchmarks' allocation setting
  runtime.configure()
  main(["benchmark", "all", "--out", os.path.dirname(os.path.abspath(__file__)), *sys.argv[1:]])
