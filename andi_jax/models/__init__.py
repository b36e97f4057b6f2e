"""Model families, picked by name: one REGISTRY entry each (the contract: andi_jax/models/base.py)."""

import dataclasses

from andi_jax.models.base import Family, Layer
from andi_jax.models.conv_transformer import ConvTransformer, ConvTransformerConfig
from andi_jax.models.lstm import LSTM, LSTMConfig
from andi_jax.models.resnet import ResNet, ResNetConfig

REGISTRY = {
  "lstm": Family(LSTM, LSTMConfig, tasks=frozenset({1, 2})),
  "conv_transformer": Family(
    ConvTransformer,
    ConvTransformerConfig,
    tasks=frozenset({1, 2}),
    gradcam_layer=lambda config: Layer("EncoderBlock_0", at="input"),  # its words
  ),
  "resnet": Family(
    ResNet,
    ResNetConfig,
    tasks=frozenset({1, 2}),
    gradcam_layer=lambda config: Layer(config.stages[-1]),  # its last stage
  ),
}


def build_model(name: str, config=None):
  """(module, config) for a registered name; config may be a config instance, a dict or None."""
  if name not in REGISTRY:
    raise ValueError(f"unknown model {name!r}; known: {sorted(REGISTRY)}")
  family = REGISTRY[name]
  if config is None:
    config = family.config()
  elif isinstance(config, dict):
    config = family.config(**config)
  elif not dataclasses.is_dataclass(config):
    raise TypeError(f"config for {name!r} must be {family.config.__name__}, a dict or None")
  return family.module(config), config


def family_of(model) -> Family:
  """The registered family of a built model."""
  family = next((f for f in REGISTRY.values() if type(model) is f.module), None)
  if family is None:
    raise ValueError(f"{type(model).__name__} is no registered model family; known: {sorted(REGISTRY)}")
  return family
