"""The convolutional families' shared layers: the 1D convolution, (B, S, C) rows with (K, C, O) kernels,
the move of left-padded rows to the front, and the count of a strided layer's outputs."""

import jax
import jax.numpy as jnp


def conv1d(h_BxSxC, w_KxCxO, stride: int, padding: tuple[int, int], windows: bool):
  """XLA's convolution, or (windows=True) one matrix product over the windows laid side by side from K
  strided slices (im2col), with the same result.

  The callers take windows on a CPU where XLA's convolution is slow: inside a loop's body (lax.map over
  an ensemble's models) it runs a convolution's gradients as naive loops, and on inputs shorter than
  twice the kernel it slows by 5-50x. Windows cost K times the input's memory (1.3 GB for 2,048 rows at
  T=1000 in the ConvTransformer's first layer).
  """
  if not windows:
    return jax.lax.conv_general_dilated(
      h_BxSxC, w_KxCxO, (stride,), (padding,), dimension_numbers=("NWC", "WIO", "NWC")
    )
  K, _, O = w_KxCxO.shape
  lo, hi = padding
  S_out = (h_BxSxC.shape[1] + lo + hi - K) // stride + 1
  h = jnp.pad(h_BxSxC, ((0, 0), (lo, hi), (0, 0)))
  last = stride * (S_out - 1) + 1
  return jnp.concatenate([h[:, k : k + last : stride] for k in range(K)], -1) @ w_KxCxO.reshape(-1, O)


def ceil_div(n, d):
  """ceil(n / d) for non-negative integer arrays, by truncating division: the exported graphs' converter
  (jax2onnx) mislowers a remainder (floor division's) and an integer (a + b) / 2 on a symbolic batch."""
  return jax.lax.div(n - (1 - d), jnp.asarray(d, jnp.result_type(n)))


def to_front(x, length_B):
  """Left-padded rows (B, ..., T) -> rows starting at column 0, zeros past their end; and the (B, T)
  validity mask."""
  T = x.shape[-1]
  t = jnp.arange(T)
  valid = t[None] < length_B[:, None]
  src = jnp.minimum(t[None] + (T - length_B)[:, None], T - 1)
  lead = x.shape[:1] + (1,) * (x.ndim - 2) + (T,)
  moved = jnp.take_along_axis(x, src.reshape(lead), -1)
  return jnp.where(valid.reshape(lead), moved, 0.0), valid
