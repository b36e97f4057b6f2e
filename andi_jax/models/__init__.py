"""Model families, picked by name. Each module exposes a Flax module and a frozen config dataclass,
called as model.apply({'params': p}, x_BxT, length_B, train=bool)."""

import dataclasses

from andi_jax.models.conv_transformer import ConvTransformer, ConvTransformerConfig
from andi_jax.models.lstm import LSTM, LSTMConfig
from andi_jax.models.resnet import ResNet, ResNetConfig

REGISTRY = {"lstm": (LSTM, LSTMConfig), "conv_transformer": (ConvTransformer, ConvTransformerConfig),
            "resnet": (ResNet, ResNetConfig)}


def build_model(name: str, config=None):
  """(module, config) for a registered name; config may be a config instance, a dict or None."""
  if name not in REGISTRY:
    raise ValueError(f"unknown model {name!r}; known: {sorted(REGISTRY)}")
  module, config_cls = REGISTRY[name]
  if config is None:
    config = config_cls()
  elif isinstance(config, dict):
    config = config_cls(**config)
  elif not dataclasses.is_dataclass(config):
    raise TypeError(f"config for {name!r} must be {config_cls.__name__}, a dict or None")
  return module(config), config
