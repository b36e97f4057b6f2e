"""Grad-CAM (Selvaraju et al., 2017) for the 1D convolutional stages of any Flax Linen model here.

For a stage with activations A (B, S, C) and a class score y (the logit of the target class):
  w_c    = mean over the row's valid positions s of dy / dA_sc     (time-averaged gradient)
  cam_s  = ReLU(sum_c w_c A_sc)
  heat_t = cam linearly interpolated at the row's point t, position s sitting at point s * stride.
Both models here use centred windows whose grid starts at the row's first point, so a stage of total
stride s has ceil(L / s) valid positions for a row of L points and position j centred on point j * s.

The stage is named, not built in: `Layer(module, at)` is a submodule path ("stage4", "EncoderBlock_0")
and whether its output or its first argument is meant; each model family registers its default
(andi_jax/models). A method interceptor adds a zero perturbation there; the gradient with respect to it
is the gradient with respect to the activations, so any model works unmodified: the ResNet's stages
(their outputs), the ConvTransformer's convolutions ("Conv_1"'s output, before its GELU) or its words
(the input of "EncoderBlock_0", what it sows as "words").

Rows must not interact (no batch statistics): the gradient of the summed scores is then each row's own.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from andi_jax.infer import bucket_of
from andi_jax.models import family_of
from andi_jax.models.base import Layer
from andi_jax.train.engine import over_models


def default_layer(model) -> Layer:
  """The family's registered layer (andi_jax/models): the ResNet's last stage, the ConvTransformer's words."""
  family = family_of(model)
  if family.gradcam_layer is None:
    raise ValueError(f"no default Grad-CAM layer for {type(model).__name__}; name one with Layer(module, at)")
  return family.gradcam_layer(model.config)


def _apply(model, params, x, length, layer: Layer, delta):
  """Logits, and the layer's activations with `delta` added (activations (B, S, C))."""
  seen = []

  def interceptor(f, args, kwargs, context):
    if context.method_name != "__call__" or "/".join(context.module.path) != layer.module:
      return f(*args, **kwargs)
    if layer.at == "input":
      seen.append(args[0] + delta)
      return f(seen[-1], *args[1:], **kwargs)
    seen.append(f(*args, **kwargs) + delta)
    return seen[-1]

  with nn.intercept_methods(interceptor):
    logits = model.apply({"params": params}, x, length, train=False)
  if len(seen) != 1:
    raise ValueError(
      f"Grad-CAM layer {layer.module!r} was called {len(seen)} times in one forward pass "
      f"(submodules: {sorted(params)})"
    )
  if seen[0].ndim != 3:
    raise ValueError(f"Grad-CAM layer {layer.module!r} ({layer.at}) has shape {seen[0].shape}, not (B, S, C)")
  return logits, seen[0]


def stride(model, params, x, layer: Layer) -> int:
  """The layer's total stride: input points per position, read from its length at a 1024-point input."""
  probe = jax.ShapeDtypeStruct(x.shape[:-1] + (1024,), x.dtype)
  length = jax.ShapeDtypeStruct(x.shape[:1], jnp.int32)
  S = jax.eval_shape(lambda p, xx, ll: _apply(model, p, xx, ll, layer, 0.0)[1], params, probe, length).shape[
    1
  ]
  if 1024 % S:
    raise ValueError(f"layer {layer.module!r}: {S} positions for 1024 points is no whole stride")
  return 1024 // S


def upsample(cam_BxS, length_B, stride: int, width: int):
  """Stage values -> one value per point, linear between positions (j at point j * stride), constant
  past the last valid one; left-padded to `width` like the input."""
  n = -(-length_B // stride)  # valid positions per row
  t = jnp.arange(width) - (width - length_B)[:, None]  # the row's point under each column
  u = jnp.clip(t / stride, 0, (n - 1)[:, None])
  j0 = jnp.floor(u).astype(jnp.int32)
  j1 = jnp.minimum(j0 + 1, (n - 1)[:, None])
  frac = u - j0
  at = lambda j: jnp.take_along_axis(cam_BxS, j, axis=1)
  return jnp.where(t >= 0, (1 - frac) * at(j0) + frac * at(j1), 0.0)


def gradcam(model, params, x, length_B, target_B, layer: Layer, stride: int):
  """Grad-CAM heat (B, W) at every column of x (zero on padding) for the target classes, and the logits.

  Pure and jittable (model, layer, stride static); x (B, W) or (B, C, W) as the model takes it.
  """
  shape = jax.eval_shape(lambda: _apply(model, params, x, length_B, layer, 0.0)[1]).shape

  def score(delta):
    logits, acts = _apply(model, params, x, length_B, layer, delta)
    return jnp.take_along_axis(logits, target_B[:, None], 1).sum(), (logits, acts)

  grads, (logits, acts) = jax.grad(score, has_aux=True)(jnp.zeros(shape, x.dtype))
  n = -(-length_B // stride)
  valid = (jnp.arange(shape[1])[None] < n[:, None])[..., None]
  weights_BxC = jnp.sum(jnp.where(valid, grads, 0.0), 1) / n[:, None]
  cam_BxS = jnp.where(valid[..., 0], nn.relu(jnp.einsum("bsc,bc->bs", acts, weights_BxC)), 0.0)
  return upsample(cam_BxS, length_B, stride, x.shape[-1]), logits


class GradCAM:
  """Grad-CAM of an ensemble (parameters stacked over members) on many rows, in fixed-shape batches.

  Each member's heat is for the same target: the given class, or the class of highest member-averaged
  probability. One compilation per bucket width (andi_jax.infer.bucket_of) and batch size. Members are
  lifted by engine.over_models(ensemble): "vmap" by default, the faster on a CPU for the ResNet.
  """

  def __init__(self, model, layer: Layer | None = None, ensemble: str = "vmap"):
    self.model, self.layer = model, layer or default_layer(model)
    self._stride = None
    self._over_models = over_models(ensemble)
    self._batch = jax.jit(self._ensemble_batch, static_argnames="stride")

  def _ensemble_batch(self, params_M, x, length_B, target_B, stride):
    def proba(p):
      return jax.nn.softmax(self.model.apply({"params": p}, x, length_B, train=False))

    probs = self._over_models(proba)(params_M).mean(0)
    target = jnp.where(target_B < 0, jnp.argmax(probs, -1), target_B)
    heat_M = self._over_models(lambda p: gradcam(self.model, p, x, length_B, target, self.layer, stride)[0])(
      params_M
    )
    return heat_M, probs, target

  def __call__(self, params_M, x_N, length_N, target_N=None, batch_size: int = 256, widths=None):
    """Per-member heat (M, N, W) aligned with x_N's columns, member-averaged probabilities (N, K) and the
    explained class (N,). x_N (N, W) or (N, C, W) left-padded; target_N: classes, or None (predicted);
    widths: ascending bucket widths (default: andi_jax.infer.bucket_of's, cut at W)."""
    x_N, length_N = np.asarray(x_N, np.float32), np.asarray(length_N, np.int32)
    N, W = len(x_N), x_N.shape[-1]
    target_N = np.full(N, -1, np.int32) if target_N is None else np.asarray(target_N, np.int32)
    one = jax.tree.map(lambda a: a[0], params_M)
    if self._stride is None:
      self._stride = stride(self.model, one, x_N[:1], self.layer)
    M = jax.tree.leaves(params_M)[0].shape[0]
    heat = np.zeros((M, N, W), np.float32)
    probs, target = None, np.zeros(N, np.int32)
    if widths is None:
      width_N = np.minimum([bucket_of(int(L)) for L in length_N], W)
    else:
      width_N = np.asarray(widths)[np.searchsorted(widths, length_N)]
    for w in np.unique(width_N):
      ids = np.flatnonzero(width_N == w)
      size = min(batch_size, len(ids))
      for start in range(0, len(ids), size):
        rows = ids[start : start + size]
        pad = lambda a: np.concatenate([a, np.repeat(a[:1], size - len(rows), 0)])  # fixed batch shape
        h, p, t = self._batch(
          params_M,
          pad(x_N[rows][..., W - w :]),
          pad(length_N[rows]),
          pad(target_N[rows]),
          stride=self._stride,
        )
        heat[:, rows, W - w :] = np.asarray(h)[:, : len(rows)]
        if probs is None:
          probs = np.zeros((N, p.shape[-1]), np.float32)
        probs[rows], target[rows] = np.asarray(p)[: len(rows)], np.asarray(t)[: len(rows)]
    return heat, probs, target
