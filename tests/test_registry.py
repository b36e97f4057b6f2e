"""The model registry: every family keeps the model contract (andi_jax/models/base.py), and the CLI's
--model choices, its task check and Grad-CAM's default layer come from the registry's entries."""

import dataclasses
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from andi_jax.cli import main
from andi_jax.explain.gradcam import default_layer
from andi_jax.models import REGISTRY, build_model
from andi_jax.models.base import Family, Layer, Model

# small configurations for speed; a family missing here is checked with its defaults
SMALL = {
  "lstm": {"hidden": 8, "layers": 2},
  "conv_transformer": {"width": 16, "heads": 2, "mlp": 32},
  "resnet": {"width": 8, "blocks": (1, 1), "norm_groups": 4, "stem_kernel": 7, "kernel": 5},
}


@dataclasses.dataclass(frozen=True)
class DummyConfig:
  outputs: int = 1
  channels: int = 1


class Dummy(nn.Module):
  """Each row's mean over its real points and channels, into a dense layer."""

  config: DummyConfig

  @nn.compact
  def __call__(self, x, length_B, *, train: bool):
    x_BxCxT = x[:, None] if x.ndim == 2 else x
    valid = jnp.arange(x.shape[-1])[None] >= x.shape[-1] - length_B[:, None]
    mean = jnp.sum(jnp.where(valid[:, None], x_BxCxT, 0.0), (1, 2)) / (length_B * x_BxCxT.shape[1])
    return nn.Dense(self.config.outputs, name="head")(mean[:, None])


@pytest.fixture
def dummy(monkeypatch):
  family = Family(Dummy, DummyConfig, tasks=frozenset({2}), gradcam_layer=lambda c: Layer("head", at="input"))
  monkeypatch.setitem(REGISTRY, "dummy", family)
  return "dummy"


def _check_contract(name, channels=None):
  """Builds the family from a dict config, applies it to left-padded rows: (B, outputs), finite."""
  config = {**SMALL.get(name, {}), "outputs": 3, **({"channels": channels} if channels else {})}
  model, config = build_model(name, config)
  assert isinstance(model, Model) and model.config is config
  assert dataclasses.is_dataclass(config) and config.outputs == 3
  length = jnp.array([32, 5, 12], jnp.int32)
  shape = (3, 32) if channels is None else (3, channels, 32)
  x = jax.random.normal(jax.random.key(0), shape, jnp.float32)
  x = jnp.where(jnp.arange(32) >= 32 - length.reshape((3,) + (1,) * (x.ndim - 1)), x, 0.0)  # left-padded
  params = model.init(jax.random.key(1), x, length, train=False)["params"]
  for train in (False, True):
    y = model.apply({"params": params}, x, length, train=train, rngs={"dropout": jax.random.key(2)})
    assert y.shape == (3, 3) and y.dtype == jnp.float32
    assert np.isfinite(np.asarray(y)).all()


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_family_keeps_the_contract(name):
  _check_contract(name)
  if REGISTRY[name].channels:
    _check_contract(name, channels=2)


def _model_choices(capsys, command):
  with pytest.raises(SystemExit):
    main([command, "--help"])
  return tuple(re.search(r"--model \{([^}]*)\}", capsys.readouterr().out).group(1).split(","))


@pytest.mark.parametrize("command", ["train", "benchmark"])
def test_cli_model_choices_are_the_registry(command, capsys):
  assert _model_choices(capsys, command) == tuple(REGISTRY)


def test_a_registered_family_is_offered_built_and_explained(dummy, capsys, tmp_path):
  assert _model_choices(capsys, "train")[-1] == _model_choices(capsys, "benchmark")[-1] == dummy
  model, config = build_model(dummy, {"outputs": 3})
  assert isinstance(model, Dummy) and config == DummyConfig(outputs=3)
  _check_contract(dummy)
  _check_contract(dummy, channels=2)
  assert default_layer(model) == Layer("head", at="input")
  with pytest.raises(SystemExit, match="model dummy does not serve Task 1"):
    main(["train", "--model", dummy, "--task", "1", "--checkpoint", str(tmp_path / "run")])


def test_default_layer_needs_a_registered_one():
  lstm, _ = build_model("lstm")
  with pytest.raises(ValueError, match="no default Grad-CAM layer for LSTM"):
    default_layer(lstm)
  with pytest.raises(ValueError, match="Dummy is no registered model family"):
    default_layer(Dummy(DummyConfig()))


def test_an_entry_breaking_the_contract_is_refused():
  @dataclasses.dataclass
  class Mutable:
    outputs: int = 1

  @dataclasses.dataclass(frozen=True)
  class NoOutputs:
    classes: int = 1

  with pytest.raises(TypeError, match="frozen dataclass"):
    Family(Dummy, Mutable, tasks=frozenset({1}))
  with pytest.raises(TypeError, match="no `outputs` field"):
    Family(Dummy, NoOutputs, tasks=frozenset({1}))
  with pytest.raises(ValueError, match="AnDi's are 1 and 2"):
    Family(Dummy, DummyConfig, tasks=frozenset({3}))
