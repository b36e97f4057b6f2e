"""Property tests of every reader: any bytes give either a valid parse or the project's own error with a
message, never another exception and never a non-finite value on its way to a model."""

import io as pyio

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from andi_jax.data.io import MIN_POINTS, TrajectoryFormatError, read_labels, read_trajectories
from andi_jax.train.checkpoint import CheckpointError, read_meta

SETTINGS = settings(
  max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _valid_files() -> dict[str, bytes]:
  rng = np.random.default_rng(0)
  npy, npz = pyio.BytesIO(), pyio.BytesIO()
  np.save(npy, rng.normal(size=(3, 2, 12)))
  np.savez(npz, positions=rng.normal(size=(2, 23)), lengths=np.array([11, 12]))
  txt = "1;" + ";".join(["0.5"] * 12) + "\n2;" + ";".join(["1e-3"] * 24) + "\n"
  csv = "traj,frame,x,y\n" + "".join(f"{k},{t},{t * 0.1},{-t}\n" for k in range(2) for t in range(11))
  return {".npy": npy.getvalue(), ".npz": npz.getvalue(), ".txt": txt.encode(), ".csv": csv.encode()}


VALID = _valid_files()
# text made of the characters the formats are made of, to reach past the first check
TEXTY = st.text(alphabet="0123456789.;,-+eE \nnaif\rtrajfrmexy", max_size=400).map(str.encode)


def _mutated(data: bytes):
  """A valid file with some bytes changed, some removed (truncation included) or some added."""
  positions = st.integers(0, max(len(data) - 1, 0))
  edits = st.lists(
    st.tuples(st.sampled_from(["set", "cut", "add"]), positions, st.integers(0, 255)), max_size=6
  )

  def apply(ops):
    b = bytearray(data)
    for op, i, v in ops:
      i = min(i, len(b))
      if op == "set" and i < len(b):
        b[i] = v
      elif op == "cut":
        del b[i:]
      else:
        b[i:i] = bytes([v])
    return bytes(b)

  return edits.map(apply)


def _check_trajectories(path):
  try:
    trajs = read_trajectories(path)
  except TrajectoryFormatError as e:
    assert str(e).startswith(f"{path}: ") and "\n" not in str(e)
    return
  assert trajs
  for a in trajs:
    assert a.dtype.kind == "f" and a.ndim == 2 and 1 <= a.shape[0] <= 3 and a.shape[1] >= MIN_POINTS
    assert np.all(np.isfinite(a))


@pytest.mark.parametrize("suffix", sorted(VALID))
@SETTINGS
@given(data=st.data())
def test_trajectory_readers_on_any_bytes(tmp_path, suffix, data):
  content = data.draw(st.one_of(st.binary(max_size=300), TEXTY, _mutated(VALID[suffix])))
  path = tmp_path / f"input{suffix}"
  path.write_bytes(content)
  _check_trajectories(path)


@SETTINGS
@given(content=st.one_of(st.binary(max_size=200), TEXTY, _mutated(b"1;0.5\n2;1.25\n3;0\n")))
def test_label_reader_on_any_bytes(tmp_path, content):
  path = tmp_path / "labels.txt"
  path.write_bytes(content)
  try:
    dims, values = read_labels(path)
  except TrajectoryFormatError as e:
    assert str(e).startswith(f"{path}: ") and "\n" not in str(e)
    return
  assert len(dims) == len(values) > 0 and set(dims.tolist()) <= {1, 2, 3} and np.all(np.isfinite(values))


@SETTINGS
@given(
  content=st.one_of(st.binary(max_size=200), _mutated(b'{"method": "all-lengths", "task": 1, "folds": 2}'))
)
def test_checkpoint_metadata_reader_on_any_bytes(tmp_path, content):
  (tmp_path / "meta.json").write_bytes(content)
  try:
    meta = read_meta(tmp_path)
  except CheckpointError as e:
    assert str(tmp_path) in str(e) and "\n" not in str(e)
    return
  assert isinstance(meta, dict)
