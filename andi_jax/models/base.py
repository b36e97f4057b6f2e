"""The model contract, and the registry entry that names a model family.

A model family is a Flax module built from a frozen config dataclass with an `outputs` field:
  model = Module(config)
  y_BxK = model.apply({"params": p}, x, length_B, train=bool)
x: (B, T) float32, or (B, C, T) where the config has a `channels` field, left-padded; length_B: (B,)
int32, the real (trailing) points of each row; y_BxK: (B, config.outputs) float, alpha in column 0
(Task 1) or class logits (Task 2). A row's output depends neither on its padding nor on the other rows.
"""

import dataclasses
from typing import Any, Callable, Protocol, runtime_checkable

import flax.linen as nn
import jax


class ModelConfig(Protocol):
  """A frozen dataclass; `outputs` columns come out of the model."""

  outputs: int


@runtime_checkable
class Model(Protocol):
  """A family's Flax module, built as Module(config); apply() runs __call__."""

  config: ModelConfig

  def __call__(self, x: jax.Array, length_B: jax.Array, *, train: bool) -> jax.Array: ...

  def apply(self, variables: dict, *args: Any, **kwargs: Any) -> Any: ...


@dataclasses.dataclass(frozen=True)
class Layer:
  """A point inside a model, for Grad-CAM: a submodule's output or its first argument."""

  module: str  # submodule path below the model, '/'-joined: "stage4", "EncoderBlock_0", "Conv_1"
  at: str = "output"  # "output": what the submodule returns; "input": its first argument

  def __post_init__(self):
    if self.at not in ("output", "input"):
      raise ValueError(f"Layer.at must be 'output' or 'input', got {self.at!r}")


@dataclasses.dataclass(frozen=True)
class Family:
  """What the rest of the code needs to know about a model family, by its registered name."""

  module: type[nn.Module]  # built as module(config)
  config: type  # its frozen config dataclass, with an `outputs` field
  tasks: frozenset[int]  # AnDi tasks it serves: 1 regresses alpha, 2 classifies the diffusion model
  gradcam_layer: Callable[[Any], Layer] | None = None  # config -> Grad-CAM's default layer; None: none

  def __post_init__(self):
    params = getattr(self.config, "__dataclass_params__", None)
    if params is None or not params.frozen:
      raise TypeError(f"{self.config.__name__} must be a frozen dataclass")
    if "outputs" not in _fields(self.config):
      raise TypeError(f"{self.config.__name__} has no `outputs` field")
    if not (issubclass(self.module, nn.Module) and "config" in _fields(self.module)):
      raise TypeError(f"{self.module.__name__} must be a Flax module with a `config` field")
    if not self.tasks <= {1, 2}:
      raise ValueError(f"tasks {sorted(self.tasks)}: AnDi's are 1 and 2")

  @property
  def channels(self) -> bool:
    """Does the config set input channels, so that x may be (B, C, T)?"""
    return "channels" in _fields(self.config)


def _fields(cls) -> set[str]:
  return {f.name for f in dataclasses.fields(cls)}
