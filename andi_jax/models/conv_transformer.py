"""The ConvTransformer (seed 000): two 1D convolutions turn a trajectory into "words", two transformer
encoder blocks read them without positional encoding or decoder, a pooled vector feeds the head.

One model serves every length. Inputs arrive left-padded (the project's convention, see
data/preprocess.py); the model first moves each row's points to the front, so that a strided
convolution sees the same grid of windows whatever the padding. Every stage then masks what lies
beyond the row's end (convolution outputs past it are zeroed, attention ignores those keys, pooling
skips them), so a prediction does not depend on the padding or on the rest of the batch.

Attention's cost grows with the square of the word count: beyond `max_tokens` words (64 points with
the default strides), consecutive words are averaged in groups sized by the row's own length, so a
trajectory of 1000 points costs about what one of 100 costs in attention, and short ones are untouched.

Per point the input has two channels: the standardised position and the increment scaled to unit
root mean square (anomalous exponents live in how increments scale and correlate).
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from andi_jax.models.conv1d import ceil_div, conv1d, to_front


@dataclasses.dataclass(frozen=True)
class ConvTransformerConfig:
  width: int = 64  # convolution channels = token dimension
  kernel: int = 5
  strides: tuple[int, ...] = (2, 2)  # one per convolution; their product shortens the token sequence
  heads: int = 4
  blocks: int = 2
  mlp: int = 128  # hidden units of each encoder block's feed-forward layer
  dropout: float = 0.1
  max_tokens: int | None = 16  # longer word sequences are average-pooled to at most this many (None: never)
  outputs: int = 1  # 1: alpha (Task 1); 5: diffusion model logits (Task 2)

  def __post_init__(self):
    object.__setattr__(self, "strides", tuple(self.strides))  # a list when read back from JSON


def _pool_words(h_BxLxC, n_B, max_tokens):
  """Averages each row's consecutive words in groups of ceil(n / max_tokens): at most max_tokens words.

  The group size depends on the row's own word count only, never on the batch or its padding.
  """
  group = ceil_div(n_B, max_tokens)
  word = jnp.arange(h_BxLxC.shape[1], dtype=group.dtype)
  slot = jax.lax.div(word[None], group[:, None])  # (B, L): each word's pooled slot
  valid = jnp.arange(h_BxLxC.shape[1])[None] < n_B[:, None]
  assign = (slot[..., None] == jnp.arange(max_tokens)) & valid[..., None]  # (B, L, max_tokens)
  total = jnp.einsum("blk,blc->bkc", assign.astype(h_BxLxC.dtype), h_BxLxC)
  count = jnp.sum(assign, 1)[..., None]
  return total / jnp.maximum(count, 1), ceil_div(n_B, group)


class EncoderBlock(nn.Module):
  config: ConvTransformerConfig

  @nn.compact
  def __call__(self, h, mask_BxL, train):
    cfg = self.config
    y = nn.LayerNorm()(h)
    y = nn.MultiHeadDotProductAttention(
      num_heads=cfg.heads, dropout_rate=cfg.dropout, deterministic=not train
    )(y, y, mask=nn.make_attention_mask(mask_BxL, mask_BxL))
    h = h + nn.Dropout(cfg.dropout, deterministic=not train)(y)
    y = nn.Dense(cfg.mlp)(nn.LayerNorm()(h))
    y = nn.Dense(cfg.width)(nn.gelu(y))
    return h + nn.Dropout(cfg.dropout, deterministic=not train)(y)


class WindowConv(nn.Module):
  """nn.Conv's 1D convolution (same parameters, same result), by windows in training on a CPU (conv1d):
  an ensemble in lax.map trains faster so than with nn.Conv unrolled over its models. Inference keeps
  XLA's convolution, faster on long rows than the windows."""

  features: int
  kernel: int
  stride: int
  padding: tuple[int, int]

  @nn.compact
  def __call__(self, h_BxSxC, train: bool):
    w = self.param("kernel", nn.initializers.lecun_normal(), (self.kernel, h_BxSxC.shape[-1], self.features))
    b = self.param("bias", nn.initializers.zeros, (self.features,))
    return conv1d(h_BxSxC, w, self.stride, self.padding, windows=train and jax.default_backend() == "cpu") + b


class ConvTransformer(nn.Module):
  config: ConvTransformerConfig

  @nn.compact
  def __call__(self, x_BxT, length_B, train: bool = False):
    cfg = self.config
    x, valid = to_front(x_BxT, length_B)
    inc = jnp.where(valid[:, 1:], x[:, 1:] - x[:, :-1], 0.0)
    rms = jnp.sqrt(jnp.sum(inc**2, 1, keepdims=True) / jnp.maximum(length_B[:, None] - 1, 1))
    inc = jnp.pad(inc / jnp.where(rms > 0, rms, 1.0), ((0, 0), (1, 0)))
    h = jnp.stack([x, inc], -1)

    n = length_B
    for i, stride in enumerate(cfg.strides):
      # Explicit padding: the window grid starts at point 0 for every width (SAME would shift it).
      pad = ((cfg.kernel - 1) // 2, cfg.kernel // 2)
      h = nn.gelu(WindowConv(cfg.width, cfg.kernel, stride, pad, name=f"Conv_{i}")(h, train))
      n = ceil_div(n, stride)  # tokens whose window starts inside the row
      mask = jnp.arange(h.shape[1])[None] < n[:, None]
      h = h * mask[..., None]
    self.sow("intermediates", "words", h)  # the last convolution's words (Grad-CAM's stage)
    if cfg.max_tokens and h.shape[1] > cfg.max_tokens:
      h, n = _pool_words(h, n, cfg.max_tokens)
      mask = jnp.arange(cfg.max_tokens)[None] < n[:, None]

    for _ in range(cfg.blocks):
      h = EncoderBlock(cfg)(h, mask, train)
    h = nn.LayerNorm()(h)
    pooled = jnp.sum(h * mask[..., None], 1) / n[:, None]
    pooled = nn.Dropout(cfg.dropout, deterministic=not train)(pooled)
    return nn.Dense(cfg.outputs)(pooled)
