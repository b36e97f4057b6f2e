"""Task 1 with the HNU per-length LSTM (seed 001), end to end.

python experiments/task1_lstm.py --workdir runs/task1_lstm              # CPU size (about an hour on 2 cores)
python experiments/task1_lstm.py --workdir runs/task1_full --scale full  # the seed's scale, for a GPU
"""

import argparse

from andi_jax import runtime
from andi_jax.methods.per_length import HNU_LENGTHS
from andi_jax.studies import task1
from andi_jax.train.engine import TrainConfig

CONFIGS = {
  # A handful of lengths spanning 10..999, small data, bounded time per ensemble.
  "cpu": task1.Task1Config(
    lengths=(10, 20, 30, 50, 100, 200, 500), train_n=40_000, test_n=10_000, group_time_budget=400.0
  ),
  # Seed 001: 43 lengths x 5 folds trained to early stop. The seed used 1-5 million trajectories per
  # length; here one shared pool of recipe trajectories is cut to every length.
  "full": task1.Task1Config(
    lengths=HNU_LENGTHS, train_n=1_000_000, test_n=100_000, train=TrainConfig(max_epochs=100), max_models=215
  ),
}

if __name__ == "__main__":
  runtime.configure()
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--scale", choices=sorted(CONFIGS), default="cpu")
  args = parser.parse_args()
  print(task1.run(CONFIGS[args.scale], args.workdir)["table"])
