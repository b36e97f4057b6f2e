"""A 1D ResNet classifier (seed 002, Bae, Baek & Jeong): ResNet-18's layout on trajectories.

Stem: a wide strided convolution (kernel 35, stride 2) and a max-pool (stride 2); then stages of basic
blocks (two convolutions and a shortcut), each stage after the first halving the resolution and
doubling the channels; global average pool; dense logits. The default is ResNet-18 ([2, 2, 2, 2],
widths 64-512, block kernels 15); depth, width and kernels are configurable.

Two uses, by `outputs` and `channels`:
- AnDi Task 2 (outputs=5, channels=1): 1D standardised series, as the other models (train/all_lengths.py).
- The seed's 8-class scheme (outputs=8, channels=2; data in andi_jax/data/eight_class.py): 2D
  trajectories, one channel per axis, each min-max scaled to [0, 1]. Classes: sub-diffusive
  (alpha ~ U(0.1, 0.9)) ATTM, CTRW, FBM, SBM; super-diffusive (alpha ~ U(1.1, 1.9)) FBM, LW, SBM; and
  Brownian motion. Brownian motion is generated as FBM at alpha = 1 exactly (andi_jax.data.simulate's
  FBM core, whose H = 1/2 branch draws independent N(0, 1) increments per axis), i.e. the reference's
  stochastic.BrownianMotion up to its scale, which the per-axis normalisation removes.

Padding: rows arrive left-padded (along the last axis). The model moves each row's points to the
front and zeroes every activation past the row's end after each layer, with fixed explicit padding on
every convolution and pool, so the strided grids start at the row's first point whatever the width.
A valid output then sees exactly what it would on the unpadded row, and a prediction depends neither
on the padding nor on the batch.

Normalisation is GroupNorm over each row's valid positions, not the reference's BatchNorm: the
ensemble engine trains parameters only (no running statistics), and batch statistics would make a
prediction depend on its batch companions.

Each stage is a submodule named stage1, stage2, ...; stage k has stride s = 2^(k+1) and its position j
is centred on the row's point j * s (centred windows, grids from the row's first point). Grad-CAM
(andi_jax/explain/gradcam.py) reads the stages by name.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from andi_jax.models.conv1d import ceil_div, conv1d, to_front


@dataclasses.dataclass(frozen=True)
class ResNetConfig:
  blocks: tuple[int, ...] = (2, 2, 2, 2)  # basic blocks per stage: ResNet-18
  width: int = 64  # channels of the first stage; each later stage doubles them
  stem_kernel: int = 35
  kernel: int = 15
  norm_groups: int = 8
  outputs: int = 8  # the seed's 8 classes; 5 for AnDi Task 2, 1 for alpha
  channels: int = 1  # input channels: 1 for (B, T) series, 2 for the seed's 2D trajectories (B, 2, T)

  def __post_init__(self):
    object.__setattr__(self, "blocks", tuple(self.blocks))  # a list when read back from JSON
    if self.stem_kernel % 2 == 0 or self.kernel % 2 == 0:
      raise ValueError("kernels must be odd (centred windows keep the grid at the row's first point)")
    if self.width % self.norm_groups:
      raise ValueError(f"width {self.width} is not a multiple of norm_groups {self.norm_groups}")

  @property
  def stages(self) -> tuple[str, ...]:
    return tuple(f"stage{k + 1}" for k in range(len(self.blocks)))


def _valid(h_BxSxC, n_B):
  return (jnp.arange(h_BxSxC.shape[1])[None] < n_B[:, None])[..., None]


class _Conv(nn.Module):
  """Centred 1D convolution without bias (a normalisation follows), He-initialised (fan out) as in
  torchvision's ResNet.

  Taps that can only ever meet the zero padding are cut off (deep stages of short rows); the result is
  the same. On a CPU, in training and on inputs shorter than twice the kernel, the convolution is one
  matrix product over its windows, laid side by side from strided slices (im2col). XLA's CPU convolution
  is several times slower on short inputs, and inside a loop's body (lax.map over the ensemble's models)
  it runs its gradients as naive loops. Inference on longer inputs keeps XLA's convolution: the windows
  of a large batch of long rows take gigabytes.
  """

  channels: int
  kernel: int
  stride: int

  @nn.compact
  def __call__(self, h, train: bool):
    init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
    w = self.param("kernel", init, (self.kernel, h.shape[-1], self.channels))
    reach = min(self.kernel // 2, h.shape[1] - 1)  # farthest tap offset that can meet an input point
    w = w[self.kernel // 2 - reach : self.kernel // 2 + reach + 1]
    windows = jax.default_backend() == "cpu" and (train or h.shape[1] < 2 * len(w))
    return conv1d(h, w, self.stride, (reach, reach), windows)


class _Norm(nn.Module):
  """GroupNorm over the valid positions, then zero past them."""

  groups: int

  @nn.compact
  def __call__(self, h, n_B, relu: bool):
    mask = jnp.broadcast_to(_valid(h, n_B), h.shape)  # GroupNorm wants the full shape
    h = nn.GroupNorm(num_groups=self.groups)(h, mask=mask)
    return jnp.where(mask, nn.relu(h) if relu else h, 0.0)


class BasicBlock(nn.Module):
  channels: int
  stride: int
  config: ResNetConfig

  @nn.compact
  def __call__(self, h, n_B, train: bool):
    """h: the previous activation; n_B: this block's valid output positions per row."""
    cfg = self.config
    y = _Norm(cfg.norm_groups)(_Conv(self.channels, cfg.kernel, self.stride)(h, train), n_B, relu=True)
    y = _Norm(cfg.norm_groups)(_Conv(self.channels, cfg.kernel, 1)(y, train), n_B, relu=False)
    if self.stride != 1 or h.shape[-1] != self.channels:
      h = _Norm(cfg.norm_groups)(_Conv(self.channels, 1, self.stride)(h, train), n_B, relu=False)
    return jnp.where(_valid(y, n_B), nn.relu(y + h), 0.0)


class Stage(nn.Module):
  channels: int
  blocks: int
  stride: int
  config: ResNetConfig

  @nn.compact
  def __call__(self, h, n_B, train: bool):
    """n_B: the stage's valid output positions per row."""
    for b in range(self.blocks):
      h = BasicBlock(self.channels, self.stride if b == 0 else 1, self.config)(h, n_B, train)
    return h


class ResNet(nn.Module):
  """Input: x (B, T) for one channel, else (B, channels, T), left-padded; length (B,) real steps per row."""

  config: ResNetConfig

  @nn.compact
  def __call__(self, x, length_B, train: bool = False):
    cfg = self.config
    x_BxCxT = x[:, None] if x.ndim == 2 else x
    if x_BxCxT.shape[1] != cfg.channels:
      raise ValueError(f"input of shape {x.shape} for a ResNet of {cfg.channels} channel(s)")
    h = jnp.swapaxes(to_front(x_BxCxT, length_B)[0], 1, 2)  # (B, T, C)
    n = ceil_div(length_B, 2)
    h = _Norm(cfg.norm_groups)(_Conv(cfg.width, cfg.stem_kernel, 2)(h, train), n, relu=True)
    # nn.max_pool's own reduction (jax2onnx mislowers nn.max_pool); past the end: zeros, below any valid max
    h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 3, 1), (1, 2, 1), ((0, 0), (1, 1), (0, 0)))
    n = ceil_div(n, 2)
    h = jnp.where(_valid(h, n), h, 0.0)
    for k, (blocks, name) in enumerate(zip(cfg.blocks, cfg.stages)):
      stride = 1 if k == 0 else 2
      n = ceil_div(n, stride)  # outputs whose window is centred inside the row
      h = Stage(cfg.width * 2**k, blocks, stride, cfg, name=name)(h, n, train)
    pooled = h.sum(1) / n[:, None]
    return nn.Dense(cfg.outputs)(pooled)
