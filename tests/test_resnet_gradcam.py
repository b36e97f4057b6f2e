import dataclasses
import itertools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from andi_jax.cli import main
from andi_jax.data import eight_class, io
from andi_jax.explain.gradcam import GradCAM, default_layer, gradcam, stride
from andi_jax.methods.all_lengths import params_dir
from andi_jax.models import build_model
from andi_jax.models.base import Layer
from andi_jax.models.resnet import _Conv
from andi_jax.studies import gradcam_robustness as robustness
from andi_jax.train import checkpoint
from andi_jax.train.engine import TrainConfig

TINY = {"width": 8, "blocks": (1, 1), "norm_groups": 4, "stem_kernel": 7, "kernel": 5}


def _rows(lengths, width, channels=2, seed=0):
  rng = np.random.default_rng(seed)
  x = np.zeros((len(lengths), channels, width), np.float32)
  for i, L in enumerate(lengths):
    x[i, :, width - L :] = rng.normal(size=(channels, L)).cumsum(1)
  return eight_class.minmax(x, np.asarray(lengths))


@pytest.fixture(scope="module")
def resnet():
  model, _ = build_model("resnet", {**TINY, "outputs": 3, "channels": 2})
  params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 2, 64)), jnp.array([64]))["params"]
  return model, params


@pytest.mark.parametrize("points", [6, 40])
def test_convolution_equals_full_kernel(points):
  """6 points, 15 taps: the taps cut to those that can meet a point. In training (and on short inputs)
  one product over the windows on a CPU, else XLA's convolution: all equal the full-kernel convolution."""
  h = jax.random.normal(jax.random.key(0), (3, points, 4))
  for stride_, train in itertools.product((1, 2), (True, False)):
    conv = _Conv(5, 15, stride_)
    params = jax.jit(conv.init, static_argnums=2)(jax.random.key(1), h, train)
    want = jax.lax.conv_general_dilated(
      h, params["params"]["kernel"], (stride_,), ((7, 7),), dimension_numbers=("NWC", "WIO", "NWC")
    )
    np.testing.assert_allclose(jax.jit(conv.apply, static_argnums=2)(params, h, train), want, atol=1e-5)


def test_two_channel_resnet_ignores_padding_and_batch(resnet):
  model, params = resnet
  lengths = [64, 40, 13, 25]
  x64 = _rows(lengths, 64)
  x128 = np.concatenate([np.full((4, 2, 64), 7.0, np.float32), x64], -1)  # junk in the padding
  apply = jax.jit(lambda x, length: model.apply({"params": params}, x, length))
  out64 = apply(x64, np.array(lengths))
  np.testing.assert_allclose(apply(x128, np.array(lengths)), out64, atol=2e-5)
  np.testing.assert_allclose(apply(x64[2:3], np.array(lengths[2:3]))[0], out64[2], atol=2e-5)
  with pytest.raises(ValueError, match="2 channel"):
    apply(x64[:, 0], np.array(lengths))


def test_gradcam_last_stage_equals_hand_computation(resnet):
  """At the last stage y_k = sum_c W_ck mean_s A_sc + b, so w_c = W_ck / n and cam = ReLU(A W_k / n)."""
  model, params = resnet
  lengths = np.array([64, 40, 13, 25, 57])
  x = _rows(lengths, 64, seed=1)
  layer = default_layer(model)
  s = stride(model, params, jnp.asarray(x), layer)
  assert (layer, s) == (Layer("stage2"), 8)
  target = np.array([0, 1, 2, 1, 0])
  heat, logits = jax.jit(gradcam, static_argnums=(0, 5, 6))(model, params, x, lengths, target, layer, s)
  assert heat.shape == x[:, 0].shape and float(heat.min()) >= 0
  _, state = jax.jit(
    lambda x, length: model.apply(
      {"params": params}, x, length, capture_intermediates=True, mutable=["intermediates"]
    )
  )(x, lengths)
  acts = np.asarray(state["intermediates"]["stage2"]["__call__"][0])
  dense = np.asarray(params["Dense_0"]["kernel"])
  some_heat = 0
  for b, L in enumerate(lengths):
    n = -(-L // s)
    cam = np.maximum(acts[b, :n] @ dense[:, target[b]] / n, 0)
    hand = np.interp(np.arange(L), np.arange(n) * s, cam)  # position j sits at point j * stride
    np.testing.assert_allclose(heat[b, 64 - L :], hand, atol=1e-6, rtol=1e-5)
    assert not np.any(heat[b, : 64 - L])
    some_heat += hand.max() > 0
  assert some_heat >= 3  # the comparison is not between zeros


def test_gradcam_other_stages_and_conv_transformer(resnet):
  model, params = resnet
  lengths = np.array([64, 21, 10])
  x = _rows(lengths, 64, seed=2)
  stacked = jax.tree.map(lambda a: jnp.stack([a, 0.5 * a]), params)
  heat, probs, target = GradCAM(model, Layer("stage1"))(stacked, x, lengths, widths=(64,))
  assert heat.shape == (2, 3, 64) and heat.min() >= 0 and heat.max() > 0
  assert not heat[:, 1, : 64 - 21].any() and not heat[:, 2, : 64 - 10].any()
  np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
  assert np.all(target == probs.argmax(1))

  ct, _ = build_model("conv_transformer", {"width": 16, "heads": 2, "mlp": 32, "outputs": 5})
  ct_params = jax.jit(ct.init)(jax.random.key(0), jnp.zeros((1, 64)), jnp.array([64]))["params"]
  one = jax.tree.map(lambda a: a[None], ct_params)
  heat, _, _ = GradCAM(ct, Layer("Conv_1"))(one, x[:, 0], lengths, widths=(64,))  # the last convolution
  assert heat.shape == (1, 3, 64) and heat.min() >= 0 and heat.max() > 0
  assert not heat[0, 1, : 64 - 21].any()
  with pytest.raises(ValueError, match="called 0 times"):
    GradCAM(ct, Layer("stage4"))(one, x[:, 0], lengths)


def test_guided_and_random_rows():
  label = np.repeat(np.arange(3), 10)
  score = np.random.default_rng(0).random((2, 30))
  config = robustness.RobustnessConfig(n_base=10, n_small=10)
  guided, random = robustness.augmented_rows(score, label, config, np.random.default_rng(1))
  assert guided.shape == random.shape == (2, 18)
  for m in range(2):
    for c in range(3):
      rows = np.flatnonzero(label == c)
      top = rows[np.argsort(-score[m, rows])[:6]]
      assert set(guided[m][label[guided[m]] == c]) == set(top)
      assert np.sum(label[random[m]] == c) == 6
  x = _rows([30, 12], 30)
  turned = robustness.transform(x, np.array([30, 12]), "rotate", np.random.default_rng(2))
  np.testing.assert_allclose(np.hypot(*turned.transpose(1, 0, 2)), np.hypot(*x.transpose(1, 0, 2)), atol=1e-5)
  noisy = robustness.transform(x, np.array([30, 12]), "noise", np.random.default_rng(2))
  assert not noisy[1, :, :18].any() and not np.allclose(noisy[1, :, 18:], x[1, :, 18:])


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
  out, work = tmp_path_factory.mktemp("results"), tmp_path_factory.mktemp("work")
  config = robustness.RobustnessConfig(
    n_base=12,
    n_small=8,
    n_val=4,
    n_test=4,
    max_length=32,
    seeds=2,
    widths=None,
    model={"width": 8, "blocks": (1,), "norm_groups": 4, "stem_kernel": 5, "kernel": 3},
    train=TrainConfig(task=2, batch_size=32, max_epochs=1),
  )
  return robustness.run(config, out, work, progress=False), out, work


def test_experiment_end_to_end(experiment):
  summary, out, work = experiment
  for name in ("results.md", "results.json", "accuracy_vs_noise.png", "heat_by_class.png"):
    assert (out / name).stat().st_size > 0
  saved = json.loads((out / "results.json").read_text())
  assert np.shape(saved["accuracy"]["guided"]) == np.shape(saved["accuracy"]["random"]) == (5, 2)
  assert np.shape(saved["accuracy"]["base"]) == (5, 2)
  assert all(0 <= a <= 1 for a in np.ravel(saved["accuracy"]["guided"]))
  table = (out / "results.md").read_text()
  assert "| 0.3 |" in table and "0.734" in table and "0.9036" in table and "Verdict" in table
  assert checkpoint.read_meta(work / "base")["method"] == "eight-class"


def test_cli_explain_writes_pngs_and_reports_bad_input(experiment, tmp_path, capsys):
  _, _, work = experiment
  test = eight_class.generate(1, max_length=32, seed=9)
  trajs = [x[:, 32 - L :].astype(np.float64) for x, L in zip(test.x, test.length)]
  io.write_trajectories(tmp_path / "t.txt", trajs)
  main(
    [
      "explain",
      str(tmp_path / "t.txt"),
      "--checkpoint",
      str(work / "base"),
      "--out",
      str(tmp_path / "ex"),
      "--max-figures",
      "3",
    ]
  )
  assert sorted(p.name for p in (tmp_path / "ex").glob("*.png")) == [
    "heat_by_class.png",
    "trajectory_0000.png",
    "trajectory_0001.png",
    "trajectory_0002.png",
  ]
  lines = (tmp_path / "ex" / "explained.csv").read_text().splitlines()
  assert len(lines) == 9 and lines[1].split(",")[3] in eight_class.CLASSES

  io.write_trajectories(tmp_path / "one_d.txt", [trajs[0][:1]])
  with pytest.raises(SystemExit, match="trajectory 0 is 1D; this eight-class model reads 2D"):
    main(
      [
        "explain",
        str(tmp_path / "one_d.txt"),
        "--checkpoint",
        str(work / "base"),
        "--out",
        str(tmp_path / "x"),
      ]
    )
  (tmp_path / "bad.txt").write_text("2;0;1;2;3;4;5;6;7;8;9;0;1;2;3;4;5;6;7;8;9\n2;0;1;x\n")
  with pytest.raises(SystemExit, match=r"bad.txt: line 2: value 3 \('x'\) is not a number"):
    main(
      ["explain", str(tmp_path / "bad.txt"), "--checkpoint", str(work / "base"), "--out", str(tmp_path / "x")]
    )


def test_cli_explain_task2_conv_transformer(tmp_path):
  """A Task 2 all-lengths checkpoint: every axis is a series, explained at the words; mixed dimensions."""
  model, config = build_model("conv_transformer", {"width": 16, "heads": 2, "mlp": 32, "outputs": 5})
  params = jax.jit(jax.vmap(lambda k: model.init(k, jnp.zeros((1, 64)), jnp.array([64]))["params"]))(
    jax.random.split(jax.random.key(0), 2)
  )
  checkpoint.save_params(params_dir(tmp_path / "ckpt"), params)
  checkpoint.write_meta(
    tmp_path / "ckpt",
    {
      "method": "all-lengths",
      "task": 2,
      "model": "conv_transformer",
      "model_config": dataclasses.asdict(config),
      "classes": list("ABCDE"),
    },
  )
  rng = np.random.default_rng(3)
  io.write_trajectories(
    tmp_path / "t.txt", [rng.normal(size=(d, L)).cumsum(1) for d, L in ((1, 40), (2, 60), (3, 33))]
  )
  main(
    [
      "explain",
      str(tmp_path / "t.txt"),
      "--checkpoint",
      str(tmp_path / "ckpt"),
      "--out",
      str(tmp_path / "ex"),
    ]
  )
  assert len(list((tmp_path / "ex").glob("trajectory_*.png"))) == 3
  assert (tmp_path / "ex" / "heat_by_class.png").stat().st_size > 0
