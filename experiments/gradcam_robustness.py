"""Seed 002's noise-robustness experiment: Grad-CAM-guided against random augmentation (8 classes).

  python experiments/gradcam_robustness.py                  # CPU size: under 30 min on 2 cores
  python experiments/gradcam_robustness.py --scale paper    # the paper's sizes (ResNet-18, 10-1000 points):
                                                            # a GPU

Writes experiments/results/gradcam_robustness/: results.md (beside the paper's figures), results.json,
accuracy_vs_noise.png, heat_by_class.png; the base models as a checkpoint in --workdir/base, for
`andi-jax explain TRAJECTORIES --checkpoint WORKDIR/base --out DIR`.
"""

import argparse
import dataclasses

from andi_jax import runtime
from andi_jax.studies import gradcam_robustness as robustness

if __name__ == "__main__":
  runtime.configure()
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--scale", choices=("cpu", "paper"), default="cpu")
  parser.add_argument(
    "--augment",
    choices=("rotate", "noise"),
    default="rotate",
    help="what the copies get: a random rotation (the reference) or localisation noise",
  )
  parser.add_argument("--out", default="experiments/results/gradcam_robustness")
  parser.add_argument("--workdir", default="runs/gradcam_robustness")
  args = parser.parse_args()
  config = robustness.RobustnessConfig() if args.scale == "cpu" else robustness.PAPER_SCALE
  summary = robustness.run(dataclasses.replace(config, augment=args.augment), args.out, args.workdir)
  print(summary["table"])
