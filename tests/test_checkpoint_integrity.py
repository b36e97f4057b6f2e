"""A damaged checkpoint is named as such: one CheckpointError naming the path, never an orbax traceback."""

import os
import re
import shutil

import numpy as np
import pytest

from andi_jax import infer
from andi_jax.methods.per_length import length_dir
from andi_jax.train import checkpoint
from andi_jax.train.checkpoint import MANIFEST, CheckpointError

PARAMS = {
  "dense": {"kernel": np.arange(12.0).reshape(3, 4), "bias": np.ones(4, np.float32)},
  "scale": np.array([2.5]),
}
CFG = {"hidden": 8, "layers": 2, "dropout": 0.2, "outputs": 1}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  path = tmp_path_factory.mktemp("saved") / "params"
  checkpoint.save_params(path, PARAMS)
  return path


@pytest.fixture
def params_copy(saved, tmp_path):
  return shutil.copytree(saved, tmp_path / "params")


def _files(path):
  return sorted(os.path.relpath(os.path.join(root, f), path) for root, _, fs in os.walk(path) for f in fs)


def _assert_equal(got, want):
  assert got.keys() == want.keys()
  for key in want:
    if isinstance(want[key], dict):
      _assert_equal(got[key], want[key])
    else:
      np.testing.assert_array_equal(got[key], want[key])


def test_intact_params_load_equal(params_copy):
  assert MANIFEST in _files(params_copy) and not any(f.endswith(".tmp") for f in _files(params_copy))
  _assert_equal(checkpoint.load_params(params_copy), PARAMS)


def test_params_without_manifest_load_as_before(params_copy):
  os.remove(params_copy / MANIFEST)  # as older versions wrote them
  _assert_equal(checkpoint.load_params(params_copy), PARAMS)


def _damage(file, how):
  data = file.read_bytes()
  if how == "truncated":
    file.write_bytes(data[: len(data) // 2])
  elif how == "zeroed":
    file.write_bytes(bytes(len(data)))
  else:
    file.unlink()


@pytest.mark.parametrize("how", ["truncated", "zeroed", "deleted"])
@pytest.mark.parametrize("which", ["_METADATA", "manifest.ocdbt", "d/"])
def test_damaged_params_file_is_named(params_copy, which, how):
  name = next(f for f in _files(params_copy) if f.startswith(which))
  _damage(params_copy / name, how)
  with pytest.raises(CheckpointError) as e:
    checkpoint.load_params(params_copy)
  reason = "is missing" if how == "deleted" else "is damaged (checksum mismatch)"
  assert str(e.value) == f"{params_copy / name} {reason}: re-export or re-train"


@pytest.mark.parametrize("how", ["truncated", "deleted"])
def test_orbax_failure_without_manifest_is_one_error(params_copy, how):
  os.remove(params_copy / MANIFEST)
  _damage(params_copy / "_METADATA", how)  # orbax reads it before any array: no stray asynchronous reads
  with pytest.raises(CheckpointError) as e:
    checkpoint.load_params(params_copy)
  assert str(e.value).startswith(f"{params_copy} cannot be restored (")
  assert str(e.value).endswith("): re-export or re-train")


def test_damaged_manifest_or_missing_directory_is_named(params_copy, tmp_path):
  (params_copy / MANIFEST).write_bytes(b'{"sha256": [')
  with pytest.raises(CheckpointError, match=f"^{re.escape(str(params_copy / MANIFEST))} is damaged"):
    checkpoint.load_params(params_copy)
  with pytest.raises(CheckpointError, match=f"^{re.escape(str(tmp_path / 'nowhere'))} is missing"):
    checkpoint.load_params(tmp_path / "nowhere")


@pytest.mark.parametrize(
  "content, why",
  [
    (b"", "empty"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF", "not UTF-8 text"),
    (b"\x00" * 64, "not JSON"),
    (b'{"method": "all-len', "not JSON"),
    (b"[1, 2]", "not a JSON object"),
  ],
)
def test_damaged_meta_is_named(tmp_path, content, why):
  (tmp_path / "meta.json").write_bytes(content)
  with pytest.raises(CheckpointError) as e:
    checkpoint.read_meta(tmp_path)
  assert str(e.value).startswith(f"{tmp_path / 'meta.json'} is damaged ({why}")
  with pytest.raises(CheckpointError, match="is damaged"):
    infer.load(tmp_path)


def test_missing_meta_is_named(tmp_path):
  with pytest.raises(CheckpointError, match=f"{re.escape(str(tmp_path / 'meta.json'))} is missing"):
    infer.load(tmp_path)


@pytest.mark.parametrize(
  "meta, message",
  [
    ({"model": "lstm"}, "lacks 'method'"),
    ({"method": "eight-trees"}, "unknown method 'eight-trees'"),
    ({"method": "hnu-per-length", "model": "lstm", "model_config": CFG}, "lacks 'lengths', 'scale', 'clip'"),
    (
      {"method": "all-lengths", "model": "nope", "model_config": {}, "task": 1, "classes": None},
      "cannot build its model",
    ),
  ],
)
def test_broken_meta_reaches_infer_as_one_error(tmp_path, meta, message):
  checkpoint.write_meta(tmp_path, meta)
  with pytest.raises(CheckpointError, match=f"^{re.escape(str(tmp_path / 'meta.json'))}.*{message}"):
    infer.load(tmp_path)


def test_damaged_length_params_reach_infer_as_one_error(tmp_path):
  checkpoint.write_meta(
    tmp_path,
    {
      "method": "hnu-per-length",
      "model": "lstm",
      "model_config": CFG,
      "lengths": [10, 20],
      "scale": 1.0,
      "clip": [0.05, 2.0],
    },
  )
  checkpoint.save_params(length_dir(tmp_path, 10), PARAMS)
  with pytest.raises(CheckpointError, match=f"^{re.escape(length_dir(tmp_path, 20))} is missing"):
    infer.load(tmp_path)
  checkpoint.save_params(length_dir(tmp_path, 20), PARAMS)
  assert isinstance(infer.load(tmp_path), infer.Predictor)
  meta_file = os.path.join(length_dir(tmp_path, 20), "_METADATA")
  with open(meta_file, "r+b") as f:
    f.truncate(os.path.getsize(meta_file) - 1)
  with pytest.raises(CheckpointError, match=f"^{re.escape(meta_file)} is damaged \\(checksum mismatch\\)"):
    infer.load(tmp_path)
