"""The shipped models (andi_jax/pretrained/), reproduced from nothing: trained on the fly, calibrated,
copied into the package, tested on andi-datasets trajectories, described by a generated model card.

  python experiments/pretrain.py --task 1                # alpha
  python experiments/pretrain.py --task 2                # diffusion model
  python experiments/pretrain.py --task 1 --stage card   # one stage: train, calibrate, ship or card

Each stage resumes from what the earlier ones left in --workdir (default runs/pretrain/taskN).
"""

from andi_jax import runtime
from andi_jax.studies import pretrain

if __name__ == "__main__":
  runtime.configure()
  pretrain.main()
