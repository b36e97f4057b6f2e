"""Task 2 (diffusion model) with the ConvTransformer (seed 000) against the LSTM, at equal training time.

  python experiments/task2_convtransformer.py                # CPU size: lengths 10-50, 2 x 10 min on 2 cores
  python experiments/task2_convtransformer.py --scale gpu    # GPU size: lengths 10-999, 2 x 1 h

Writes experiments/results/task2_convtransformer/: results.md per length bucket, results.json, PNGs.
"""

from andi_jax import runtime
from andi_jax.studies import equal_time

if __name__ == "__main__":
  runtime.configure()
  equal_time.main(task=2, doc=__doc__)
