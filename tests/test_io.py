import os
import re

import numpy as np
import pytest

from andi_jax.data import io
from andi_jax.data.io import (
  MIN_POINTS,
  TrajectoryFormatError,
  read_labels,
  read_trajectories,
  write_labels,
  write_trajectories,
)


def _ragged(rng: np.random.Generator) -> list[np.ndarray]:
  return [rng.normal(size=(d, T)) for d, T in [(1, 10), (2, 37), (3, 12), (1, 100), (2, 10)]]


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> None:
  assert len(a) == len(b)
  for u, v in zip(a, b):
    assert u.shape == v.shape
    np.testing.assert_array_equal(u, v)


def _raises(path, where: str, what: str):
  """Expect a TrajectoryFormatError naming the file, the place and the problem."""
  return pytest.raises(TrajectoryFormatError, match=re.escape(f"{path.name}: {where}: ") + f".*{what}")


# --- round trips ----------------------------------------------------------------------------


def test_txt_round_trip_ragged_mixed_dims(tmp_path):
  trajs = _ragged(np.random.default_rng(0))
  p = tmp_path / "task1.txt"
  write_trajectories(p, trajs)
  _same(read_trajectories(p), trajs)  # full precision: exact
  first = p.read_text().split("\n")[2].split(";")
  assert first[0] == "3" and len(first) == 1 + 3 * 12
  # coordinate-major layout: all x, then all y, then all z
  assert float(first[13]) == trajs[2][1, 0]


def test_txt_accepts_andi_float_dims(tmp_path):
  p = tmp_path / "task1.txt"
  p.write_text("2.0;" + ";".join(str(v) for v in range(20)) + "\n")
  (a,) = read_trajectories(p)
  np.testing.assert_array_equal(a, np.arange(20.0).reshape(2, 10))


def test_npy_round_trips(tmp_path):
  rng = np.random.default_rng(1)
  x2 = rng.normal(size=(4, 15)).astype(np.float32)
  np.save(tmp_path / "a.npy", x2)
  out = read_trajectories(tmp_path / "a.npy")
  _same(out, [r[None] for r in x2])
  assert out[0].dtype == np.float32

  x3 = rng.normal(size=(3, 2, 11))
  np.save(tmp_path / "b.npy", x3)
  _same(read_trajectories(tmp_path / "b.npy"), list(x3))


def test_npz_holds_ragged_trajectories(tmp_path):
  rng = np.random.default_rng(1)
  trajs = [rng.normal(size=(2, T)) for T in (10, 37, 12)]
  p = tmp_path / "r.npz"
  np.savez(p, positions=np.concatenate(trajs, axis=1), lengths=[10, 37, 12])
  _same(read_trajectories(p), trajs)
  np.savez(p, positions=np.arange(20.0), lengths=[10, 10])  # 1D: positions may be a flat array
  _same(read_trajectories(p), [np.arange(10.0)[None], np.arange(10.0, 20.0)[None]])


class _Payload:
  """Unpickling this object creates the file `marker`: the proof that code ran."""

  def __init__(self, marker):
    self.marker = str(marker)

  def __reduce__(self):
    return (open, (self.marker, "w"))


def test_pickled_npy_never_runs_its_payload(tmp_path):
  import pickle

  marker = tmp_path / "ran"
  obj = np.empty(2, dtype=object)
  obj[:] = [np.zeros((1, 10)), _Payload(marker)]
  np.save(tmp_path / "obj.npy", obj, allow_pickle=True)  # an object array: pickle inside a .npy
  (tmp_path / "raw.npy").write_bytes(pickle.dumps(_Payload(marker)))  # a bare pickle named .npy
  (tmp_path / "obj.npz").write_bytes(b"")
  np.savez(tmp_path / "obj.npz", positions=obj, lengths=np.array([10]))
  for name in ("obj.npy", "raw.npy", "obj.npz"):
    with pytest.raises(TrajectoryFormatError, match="never unpickles"):
      read_trajectories(tmp_path / name)
  assert not marker.exists()


def test_csv_long_format(tmp_path):
  rng = np.random.default_rng(2)
  a, b = rng.normal(size=(2, 12)), rng.normal(size=(2, 10))
  rows = [("7", f, *a[:, f].tolist()) for f in range(12)] + [("3", f, *b[:, f].tolist()) for f in range(10)]
  order = rng.permutation(len(rows))  # shuffled frames: sorted back by the time column
  order = np.r_[0, order[order != 0]]  # ...but track 7 still appears first
  lines = ["track_id,frame,x,y,intensity"] + [
    f"{r[0]},{r[1]},{r[2]!r},{r[3]!r},1" for r in (rows[i] for i in order)
  ]
  p = tmp_path / "tracks.csv"
  p.write_text("\n".join(lines) + "\n")
  _same(read_trajectories(p), [a, b])

  p1 = tmp_path / "one.csv"  # 1D, no time column: file order
  p1.write_text("particle,x\n" + "".join(f"0,{v!r}\n" for v in a[0].tolist()))
  _same(read_trajectories(p1), [a[:1]])


def test_labels_round_trip(tmp_path):
  p = tmp_path / "ref1.txt"
  write_labels(p, [1, 2, 3], [0.05, 1.5, 2.0], fmt="%.4f")
  dims, vals = read_labels(p)
  np.testing.assert_array_equal(dims, [1, 2, 3])
  np.testing.assert_allclose(vals, [0.05, 1.5, 2.0])
  write_labels(p, np.array([1, 1]), np.array([4, 0]), fmt="%d")
  assert p.read_text() == "1;4\n1;0\n"


# --- validation -------------------------------------------------------------------------------

_GOOD = "1;" + ";".join(["0.5"] * 10)


@pytest.mark.parametrize(
  "text, line, what",
  [
    ("", 1, "empty file"),
    (_GOOD + "\n\n" + _GOOD + "\n", 2, "empty line"),
    (_GOOD + "\n" + _GOOD + "\n\n", 3, "empty line"),  # only one trailing newline is allowed
    (_GOOD + "\n1;" + ";".join(["0.5"] * 9) + ";abc\n", 2, "value 10 .*not a number"),
    (_GOOD + "\n" + _GOOD + "\n1;nan" + ";0.5" * 9, 3, "value 1 .*not finite"),
    ("1;inf" + ";0.5" * 9, 1, "not finite"),
    ("1" + ";0.5" * 9, 1, "9 points, fewer than 10"),
    ("2" + ";0.5" * 21, 1, "21 values is not a multiple of dimension 2"),
    ("4" + ";0.5" * 40, 1, "dimension '4' must be 1, 2 or 3"),
    ("1.5" + ";0.5" * 10, 1, "dimension '1.5'"),
    ("x" + ";0.5" * 10, 1, "dimension 'x' is not a number"),
    (_GOOD + ";\n", 1, "value 11 .*not a number"),  # trailing separator
  ],
)
def test_txt_errors(tmp_path, text, line, what):
  p = tmp_path / "bad.txt"
  p.write_text(text)
  with _raises(p, f"line {line}", what):
    read_trajectories(p)


@pytest.mark.parametrize(
  "text, line, what",
  [
    ("", 1, "empty file"),
    ("1;0.5\n\n", 2, "empty line"),
    ("1;0.5\n2;abc\n", 2, "not a number"),
    ("1;0.5\n1;nan\n", 2, "not finite"),
    ("1;0.5;0.7\n", 1, "expected 'dim;value', got 3 fields"),
    ("0;0.5\n", 1, "must be 1, 2 or 3"),
  ],
)
def test_label_errors(tmp_path, text, line, what):
  p = tmp_path / "ref.txt"
  p.write_text(text)
  with _raises(p, f"line {line}", what):
    read_labels(p)


def test_npy_errors(tmp_path):
  p = tmp_path / "bad.npy"
  x = np.zeros((3, 2, 12))
  x[1, 0, 5] = np.nan
  np.save(p, x)
  with _raises(p, "trajectory 1", "NaN or inf"):
    read_trajectories(p)
  np.save(p, np.zeros((3, 9)))
  with _raises(p, "trajectory 0", "9 points, fewer than 10"):
    read_trajectories(p)
  np.save(p, np.zeros((2, 50, 2)))  # (n, T, dim) by mistake
  with _raises(p, "trajectory 0", r"dimension 50 .*\(n, T, dim\)"):
    read_trajectories(p)
  np.save(p, np.zeros((0, 10)))
  with _raises(p, "file", "empty file"):
    read_trajectories(p)
  np.save(p, np.zeros(20))
  with _raises(p, "file", "expected shape"):
    read_trajectories(p)
  p.write_bytes(b"\x93NUMPY\x01\x00garbage")
  with _raises(p, "file", "not a readable array"):
    read_trajectories(p)
  np.save(p, np.array([["a"] * 10]))
  with _raises(p, "trajectory 0", "expected a real"):
    read_trajectories(p)


_CSV = "traj,t,x,y\n" + "".join(f"0,{i},{i}.0,1.0\n" for i in range(10))


@pytest.mark.parametrize(
  "text, line, what",
  [
    ("", 1, "empty file"),
    ("traj,t,x,y\n", 2, "header only"),
    ("id,t,x,y\n0,0,1,1\n", 1, "missing trajectory id column"),
    ("traj,t,y\n0,0,1\n", 1, "coordinate columns must be x"),
    ("traj,t,x,z\n0,0,1,1\n", 1, "coordinate columns must be x"),
    (_CSV.replace("3,3.0,1.0", "3,abc,1.0"), 5, "column 'x': 'abc' is not a finite number"),
    (_CSV.replace("3,3.0,1.0", "3,3.0,inf"), 5, "column 'y'"),
    (_CSV.replace("4,4.0", "4,4.0,9"), 6, "5 fields, header has 4"),
    (_CSV.replace("0,5,5.0,1.0\n", "\n"), 7, "empty line"),
    (_CSV.replace("0,5,", "0,4,"), 7, "two points at time 4"),
    (_CSV + "1,0,0,0\n", 12, "trajectory '1' has 1 points, fewer than 10"),
  ],
)
def test_csv_errors(tmp_path, text, line, what):
  p = tmp_path / "bad.csv"
  p.write_text(text)
  with _raises(p, f"line {line}", what):
    read_trajectories(p)


def test_unknown_suffix(tmp_path):
  p = tmp_path / "x.json"
  p.write_text("[]")
  with _raises(p, "file", "unsupported suffix"):
    read_trajectories(p)


def test_failed_write_keeps_existing_file(tmp_path, monkeypatch):
  p = tmp_path / "task1.txt"
  good = [np.ones((1, 10))]
  write_trajectories(p, good)
  before = p.read_bytes()

  with _raises(p, "trajectory 1", "NaN or inf"):  # invalid data: rejected before any write
    write_trajectories(p, [np.zeros((1, 12)), np.full((1, 12), np.nan)])
  with _raises(p, "trajectory 0", f"fewer than {MIN_POINTS}"):
    write_trajectories(p, [np.zeros((1, 5))])
  with _raises(p, "entry 0", "must be 1, 2 or 3"):
    write_labels(p, [4], [1.0])

  def broken_replace(src, dst):
    raise OSError("disk full")

  monkeypatch.setattr(io.os, "replace", broken_replace)  # failure at the last step of a write
  with pytest.raises(OSError, match="disk full"):
    write_trajectories(p, [np.zeros((2, 20))])
  assert p.read_bytes() == before
  assert os.listdir(tmp_path) == ["task1.txt"]  # no temp file left behind


@pytest.mark.parametrize("suffix", [".txt", ".npy", ".npz", ".csv"])
def test_write_read_round_trip_every_format(tmp_path, suffix):
  rng = np.random.default_rng(3)
  ragged = [[(2, 12), (2, 30)]] if suffix != ".npy" else []  # a .npy holds one shape
  for shapes in ragged + [[(3, 15), (3, 15)]]:
    trajs = [rng.normal(size=s) for s in shapes]
    path = tmp_path / f"t{len(shapes[0])}{shapes[1][1]}{suffix}"
    io.write_trajectories(path, trajs)
    back = io.read_trajectories(path)
    assert len(back) == len(trajs)
    for a, b in zip(trajs, back):
      np.testing.assert_array_equal(a, b)


def test_npz_errors(tmp_path):
  p = tmp_path / "r.npz"
  np.savez(p, x=np.zeros(10))
  with _raises(p, "file", "expected arrays positions and lengths"):
    read_trajectories(p)
  np.savez(p, positions=np.zeros((1, 25)), lengths=[10, 10])
  with _raises(p, "lengths", "sum to 20, positions hold 25"):
    read_trajectories(p)
  np.savez(p, positions=np.zeros((1, 19)), lengths=[10, 9])
  with _raises(p, "trajectory 1", "9 points"):
    read_trajectories(p)
  np.savez(p, positions=np.zeros((1, 20)), lengths=[10.0, 10.0])
  with _raises(p, "lengths", "integer"):
    read_trajectories(p)
  p.write_bytes(b"PK\x03\x04 truncated")
  with _raises(p, "file", "not a readable array"):
    read_trajectories(p)
  with _raises(tmp_path / "r.npy", "file", "holds trajectories of one shape"):
    write_trajectories(tmp_path / "r.npy", [np.zeros((1, 10)), np.zeros((1, 11))])
  with _raises(p, "trajectory 1", "holds one dimension"):
    write_trajectories(p, [np.zeros((1, 10)), np.zeros((2, 10))])


def test_csv_gaps_are_refused_or_split_and_ids_kept(tmp_path):
  frames = [*range(12), *range(15, 27)]  # track 'b' skips frames 12-14
  lines = ["track_id,frame,x"] + [f"a,{f},{f * 0.5}" for f in range(11)] + [f"b,{f},{f}" for f in frames]
  p = tmp_path / "gaps.csv"
  p.write_text("\n".join(lines) + "\n")
  with _raises(p, "line 25", "trajectory 'b' jumps from frame 11 to 15 .*--gaps split"):
    read_trajectories(p)
  ids, trajs = io.read_tracks(p, gaps="split")
  assert ids == ["a", "b:0", "b:1"] and [a.shape[1] for a in trajs] == [11, 12, 12]
  np.testing.assert_array_equal(trajs[2][0], np.arange(15, 27))
  p.write_text("traj,frame,x\n" + "".join(f"0,{f + 0.5},{f}\n" for f in range(10)))
  with _raises(p, "line 2", "frame 0.5 is not an integer"):
    read_trajectories(p)
  p.write_text(
    "traj,t,x\n" + "".join(f"0,{0.1 * f!r},{f}\n" for f in [*range(10), 11])
  )  # times: the step is 0.1
  with _raises(p, "line 12", "jumps from t 0.9 to 1.1"):
    read_trajectories(p)
