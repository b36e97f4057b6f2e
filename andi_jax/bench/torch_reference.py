"""The seed-001 method as its users run it today: one PyTorch LSTM at a time (optional: `.[bench]`).

nn.LSTM(1, 64, 3 layers) -> last step -> dropout 0.2 -> Linear(64, 1), MSE, Adam 1e-3, batch 512, on the
same standardised arrays as the JAX side. Used by the benchmark suite only; imports torch lazily.
"""

import time

import numpy as np


def _torch():
  """torch, with denormal numbers flushed to zero as XLA does on CPU. Set before torch starts its thread
  pool, the flag reaches every worker (threads inherit it). Without it, the LSTM's vanishing gradients
  make its training step at long T several times slower on some CPUs; the comparison is then about
  denormal arithmetic, not the kernels."""
  import torch

  torch.set_flush_denormal(True)
  return torch


def available() -> bool:
  try:
    import torch  # noqa: F401
  except ImportError:
    return False
  return True


def _model(seed: int):
  torch = _torch()
  from torch import nn

  class SeedLSTM(nn.Module):
    def __init__(self):
      super().__init__()
      self.lstm = nn.LSTM(1, 64, num_layers=3, batch_first=True)
      self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(64, 1))

    def forward(self, x_BxT):
      out, _ = self.lstm(x_BxT[..., None])
      return self.head(out[:, -1])[:, 0]

  torch.manual_seed(seed)
  return SeedLSTM()


def train_step(x_NxT: np.ndarray, y_N: np.ndarray, batch: int = 512, models: int = 1):
  """One training step on the first `batch` rows (MSE, Adam 1e-3) of each of `models` separate models,
  one after another (the seed's loop), as a call."""
  torch = _torch()
  trained = [_model(seed) for seed in range(models)]
  opts = [torch.optim.Adam(model.parameters(), lr=1e-3) for model in trained]
  x, y = torch.from_numpy(x_NxT[:batch]), torch.from_numpy(y_N[:batch])

  def step():
    for model, opt in zip(trained, opts):
      opt.zero_grad()
      torch.nn.functional.mse_loss(model(x), y).backward()
      opt.step()

  return step


def infer_call(x_NxT: np.ndarray, batch: int = 2048, folds: int = 5):
  """The seed's prediction of the first `batch` rows, the mean of its `folds` models' outputs, as a call."""
  torch = _torch()
  models = [_model(seed).eval() for seed in range(folds)]
  x = torch.from_numpy(x_NxT[:batch])

  def infer():
    with torch.no_grad():
      torch.stack([model(x) for model in models]).mean(0)

  return infer


def time_to_mae(
  x_train, y_train, x_val, y_val, target: float, max_epochs: int = 30, seed: int = 0, batch: int = 512
) -> dict:
  """The seed's loop (shuffle, batches of 512, validation MAE after each epoch, learning rate / 5 after
  2 epochs without improvement) until the validation MAE is at most target."""
  torch = _torch()
  model = _model(seed)
  opt = torch.optim.Adam(model.parameters(), lr=1e-3)
  plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.2, patience=2)
  rng = np.random.default_rng(seed)
  xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
  xv, yv = torch.from_numpy(x_val), torch.from_numpy(y_val)
  start, history = time.perf_counter(), []
  for epoch in range(max_epochs):
    model.train()
    order = torch.from_numpy(rng.permutation(len(xt)))
    for b in range(len(xt) // batch):
      idx = order[b * batch : (b + 1) * batch]
      opt.zero_grad()
      torch.nn.functional.mse_loss(model(xt[idx]), yt[idx]).backward()
      opt.step()
    model.eval()
    with torch.no_grad():
      mae = float(
        torch.cat(
          [(model(xv[i : i + 4096]) - yv[i : i + 4096]).abs() for i in range(0, len(xv), 4096)]
        ).mean()
      )
    history.append(mae)
    plateau.step(mae)
    if mae <= target:
      break
  return {
    "seconds": time.perf_counter() - start,
    "epochs": len(history),
    "val_mae": history,
    "reached": history[-1] <= target,
  }
