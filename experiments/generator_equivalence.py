"""The decisive test of the JAX generators (issue 6): the same network and budget trained on JAX-generated
and on andi-datasets recipe data, both scored on one andi-datasets test set (Task 1 MAE, Task 2 F1).

  python experiments/generator_equivalence.py                # CPU size: ~20 min on 2 idle cores (56 shared)
  python experiments/generator_equivalence.py --scale gpu    # all lengths, ConvTransformer, more data

Writes experiments/results/generator_equivalence/results.md and results.json; data caches and
checkpoints go to --workdir.
"""

import argparse
import os

import jax

from andi_jax import runtime
from andi_jax.studies import generator_equivalence

if __name__ == "__main__":
  runtime.configure()
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--scale", choices=("cpu", "gpu"), default="cpu")
  parser.add_argument("--workdir", default="workdir/generator_equivalence")
  parser.add_argument(
    "--out", default=os.path.join(os.path.dirname(__file__), "results", "generator_equivalence")
  )
  args = parser.parse_args()
  # the runs compile the same steps again and again (a new trainer each): reuse them across runs
  jax.config.update("jax_compilation_cache_dir", os.path.join(os.path.abspath(args.workdir), "jax_cache"))
  generator_equivalence.run(generator_equivalence.scales()[args.scale], args.workdir, args.out)
  with open(os.path.join(args.out, "results.md")) as f:
    print(f.read())
