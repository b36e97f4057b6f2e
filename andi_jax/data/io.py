"""Trajectory and label files, validated strictly.

In memory a data set is a list of float arrays, each (dim, T_i). Formats:
- `.txt`, the AnDi challenge format: one trajectory per line, `dim;x_1;...;x_T`; for dim > 1 all x,
  then all y, then all z (dim·T values after dim).
- `.npy`: (n, T) for 1D or (n, dim, T), a plain numeric array. Object (pickled) arrays are refused:
  unpickling a file runs whatever code it holds.
- `.npz`, ragged trajectories without pickle: `positions` (dim, total points) or (total points,) for 1D,
  the trajectories one after another, and `lengths` (n,), each trajectory's number of points.
- `.csv`, long format as tracking software exports it: a header with a trajectory id column (`traj`,
  `track_id` or `particle`), an optional time column (`frame` or `t`) and coordinates `x`[, `y`[, `z`]].
- Reference/submission files: `dim;value` lines.

Every malformed input raises TrajectoryFormatError naming the file and the line (text, csv) or the
trajectory index (npy, npz): never a silently wrong answer.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import math
import os
import tempfile
import tokenize
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

MIN_POINTS = 10

_ID_COLUMNS = ("traj", "track_id", "particle")
_TIME_COLUMNS = ("frame", "t")
_COORDS = ("x", "y", "z")


class TrajectoryFormatError(ValueError):
  """A trajectory or label file (or the data to be written to one) is malformed."""


def _fail(path: str | os.PathLike, where: str, what: str) -> TrajectoryFormatError:
  return TrajectoryFormatError(f"{path}: {where}: {what}")


def _parse_dim(field: str) -> int:
  """A dimension written as '2' or, as andi-datasets writes it, '2.0'; raises ValueError."""
  try:
    v = float(field)
  except ValueError:
    raise ValueError(f"dimension {field!r} is not a number") from None
  if not v.is_integer() or not 1 <= v <= 3:
    raise ValueError(f"dimension {field!r} must be 1, 2 or 3")
  return int(v)


def _parse_floats(fields: Sequence[str]) -> np.ndarray:
  """Finite floats; raises ValueError naming the first bad field (1-based)."""
  try:
    values = np.array(fields, dtype=np.float64)
  except ValueError:
    for j, f in enumerate(fields):
      try:
        float(f)
      except ValueError:
        raise ValueError(f"value {j + 1} ({f!r}) is not a number") from None
    raise  # numpy refused a field that python accepts: still not ours to guess
  bad = np.flatnonzero(~np.isfinite(values))
  if bad.size:
    raise ValueError(f"value {bad[0] + 1} ({fields[bad[0]]!r}) is not finite")
  return values


def _check_traj(a: np.ndarray) -> None:
  """Raises ValueError unless `a` is a finite real (dim, T) array with dim 1-3 and T >= MIN_POINTS."""
  if a.dtype.kind not in "fiu" or a.ndim != 2:
    raise ValueError(f"expected a real (dim, T) array, got dtype {a.dtype} shape {a.shape}")
  if not 1 <= a.shape[0] <= 3:
    raise ValueError(f"dimension {a.shape[0]} must be 1, 2 or 3 (shape {a.shape})")
  if a.shape[1] < MIN_POINTS:
    raise ValueError(f"{a.shape[1]} points, fewer than {MIN_POINTS}")
  if not np.all(np.isfinite(a)):
    raise ValueError("contains NaN or inf")


def _read_text(path: Path) -> str:
  """The file's text; one TrajectoryFormatError for a directory, an unreadable or a non-UTF-8 file."""
  with _open(path) as f:
    data = f.read()
  try:
    return data.decode("utf-8")
  except UnicodeDecodeError as e:
    line = data.count(b"\n", 0, e.start) + 1
    raise _fail(
      path, f"line {line}", f"not UTF-8 text (byte {e.start}: {data[e.start : e.start + 1]!r})"
    ) from None


def _open(path: Path):
  """path opened for binary reading; one TrajectoryFormatError for a directory or an unreadable file."""
  try:
    return open(path, "rb")
  except IsADirectoryError:
    raise _fail(path, "file", "is a directory, not a file") from None
  except PermissionError:
    raise _fail(path, "file", "not readable (permission denied)") from None


def _dim_lines(path: Path) -> Iterator[tuple[int, list[str]]]:
  """(line number, fields) of every line, read as they come; rejects an empty file, empty lines and
  text that is not UTF-8."""
  with _open(path) as f:
    i, offset = 0, 0
    for i, raw in enumerate(f, 1):
      try:
        line = raw.decode("utf-8")
      except UnicodeDecodeError as e:
        byte = offset + e.start
        raise _fail(
          path, f"line {i}", f"not UTF-8 text (byte {byte}: {raw[e.start : e.start + 1]!r})"
        ) from None
      offset += len(raw)
      if not line.strip():
        raise _fail(path, f"line {i}", "empty line")
      yield i, line.removesuffix("\n").split(";")
    if i == 0:
      raise _fail(path, "line 1", "empty file")


def _parse_txt_line(path: Path, i: int, fields: list[str]) -> np.ndarray:
  try:
    dim = _parse_dim(fields[0])
    values = _parse_floats(fields[1:])
    if len(values) % dim:
      raise ValueError(f"{len(values)} values is not a multiple of dimension {dim}")
    a = values.reshape(dim, -1)
    _check_traj(a)
  except ValueError as e:
    raise _fail(path, f"line {i}", str(e)) from None
  return a


_NPZ_KEYS = ("positions", "lengths")
_NO_PICKLE = (
  "holds Python objects (a pickled array); andi-jax never unpickles a data file, as unpickling "
  "runs the code it holds: save ragged trajectories as .npz with 'positions' and 'lengths'"
)


def _load_array(path: Path, what: str, load) -> np.ndarray:
  """load() with every failure of a malformed file turned into one TrajectoryFormatError."""
  try:
    return load()
  except TrajectoryFormatError:
    raise
  except ValueError as e:
    pickled = "allow_pickle" in str(e) or "Python objects" in str(e)  # np.load, without and with mmap
    raise _fail(path, what, _NO_PICKLE if pickled else f"not a readable array ({e})") from None
  except (
    OSError,
    EOFError,
    KeyError,
    MemoryError,
    NotImplementedError,
    SyntaxError,
    tokenize.TokenError,
    zipfile.BadZipFile,
  ) as e:
    raise _fail(path, what, f"not a readable array ({type(e).__name__}: {e})") from None


def _checked_items(
  path: Path, items: list[np.ndarray], transposed: bool = False, first: int = 0
) -> list[np.ndarray]:
  """The items as float arrays, or an error naming the first bad one by its index in the file."""
  for k, a in enumerate(items, first):
    try:
      _check_traj(a)
    except ValueError as e:
      hint = " (is the array (n, T, dim)? expected (n, dim, T))" if transposed else ""
      raise _fail(path, f"trajectory {k}", str(e) + hint) from None
  return [a if a.dtype.kind == "f" else a.astype(np.float64) for a in items]


def _iter_npy(path: Path, chunk: int) -> Iterator[list[np.ndarray]]:
  """The trajectories of a .npy, `chunk` at a time: the file is mapped, so memory holds one chunk."""
  arr = _load_array(path, "file", lambda: np.load(path, mmap_mode="r", allow_pickle=False))
  if not isinstance(arr, np.ndarray):
    raise _fail(path, "file", "a .npz archive named .npy; rename it to .npz")
  if arr.size == 0:
    raise _fail(path, "file", "empty file")
  if arr.ndim not in (2, 3):
    raise _fail(path, "file", f"expected shape (n, T) or (n, dim, T), got {arr.shape}")
  transposed = arr.ndim == 3 and arr.shape[1] > 3 >= arr.shape[2]
  for start in range(0, len(arr), chunk):
    part = np.array(arr[start : start + chunk])
    items = list(part[:, None, :] if arr.ndim == 2 else part)
    yield _checked_items(path, items, transposed, first=start)


def _read_npz(path: Path) -> list[np.ndarray]:
  def load():
    with np.load(path, allow_pickle=False) as f:
      if not isinstance(f, np.lib.npyio.NpzFile) or sorted(f.files) != sorted(_NPZ_KEYS):
        names = f.files if isinstance(f, np.lib.npyio.NpzFile) else "a single array"
        raise _fail(path, "file", f"expected arrays {' and '.join(_NPZ_KEYS)}, got {names}")
      return f["positions"], f["lengths"]

  positions, lengths = _load_array(path, "file", load)
  if positions.ndim == 1:
    positions = positions[None]
  if positions.dtype.kind not in "fiu" or positions.ndim != 2 or not 1 <= positions.shape[0] <= 3:
    raise _fail(
      path,
      "positions",
      f"expected a real (dim, total points) array with dim 1-3, got dtype "
      f"{positions.dtype} shape {positions.shape}",
    )
  if lengths.dtype.kind not in "iu" or lengths.ndim != 1 or lengths.size == 0:
    raise _fail(
      path,
      "lengths",
      f"expected a non-empty 1D integer array, got dtype {lengths.dtype} shape {lengths.shape}",
    )
  if np.any(lengths < 0) or lengths.sum() != positions.shape[1]:
    raise _fail(
      path, "lengths", f"lengths sum to {lengths.sum()}, positions hold {positions.shape[1]} points"
    )
  return _checked_items(path, np.split(positions, np.cumsum(lengths)[:-1], axis=1))


def _read_csv(path: Path, gaps: str) -> tuple[list[str], list[np.ndarray]]:
  rows = csv.reader(io.StringIO(_read_text(path), newline=""))
  try:
    return _parse_csv(path, rows, gaps)
  except csv.Error as e:
    raise _fail(path, f"line {rows.line_num}", f"malformed CSV ({e})") from None


def _parse_csv(path: Path, rows, gaps: str) -> tuple[list[str], list[np.ndarray]]:
  header = next(rows, None)
  if not header or not any(h.strip() for h in header):
    raise _fail(path, "line 1", "empty file" if header is None else "empty header line")
  names = [h.strip().lower() for h in header]
  id_col = next((names.index(c) for c in _ID_COLUMNS if c in names), None)
  if id_col is None:
    raise _fail(
      path, "line 1", f"missing trajectory id column (one of {', '.join(_ID_COLUMNS)}); header {header}"
    )
  t_col = next((names.index(c) for c in _TIME_COLUMNS if c in names), None)
  present = [c in names for c in _COORDS]
  if present not in ([True, False, False], [True, True, False], [True, True, True]):
    raise _fail(path, "line 1", f"coordinate columns must be x, x,y or x,y,z; header {header}")
  coord_cols = [names.index(c) for c, p in zip(_COORDS, present) if p]
  numeric_cols = coord_cols + ([t_col] if t_col is not None else [])

  tracks: dict[str, list[tuple[int, list[float]]]] = {}  # id -> (line, [coords..., time])
  for row in rows:
    line = rows.line_num
    if not row or not any(c.strip() for c in row):
      raise _fail(path, f"line {line}", "empty line")
    if len(row) != len(names):
      raise _fail(path, f"line {line}", f"{len(row)} fields, header has {len(names)}")
    values = []
    for c in numeric_cols:
      try:
        values.append(float(_parse_floats([row[c]])[0]))
      except ValueError:
        raise _fail(path, f"line {line}", f"column {names[c]!r}: {row[c]!r} is not a finite number") from None
    tracks.setdefault(row[id_col].strip(), []).append((line, values))
  if not tracks:
    raise _fail(path, "line 2", "empty file (header only)")

  dim = len(coord_cols)
  ids, trajs = [], []
  for tid, pts in tracks.items():
    segments = [pts]
    if t_col is not None:
      segments = _segments(path, tid, sorted(pts, key=lambda p: p[1][dim]), dim, names[t_col], gaps)
    for k, seg in enumerate(segments):
      name = tid if len(segments) == 1 else f"{tid}:{k}"
      a = np.array([p[1][:dim] for p in seg], dtype=np.float64).T
      if a.shape[1] < MIN_POINTS:
        raise _fail(
          path, f"line {seg[0][0]}", f"trajectory {name!r} has {a.shape[1]} points, fewer than {MIN_POINTS}"
        )
      ids.append(name)
      trajs.append(a)
  return ids, trajs


def _segments(path: Path, tid: str, pts: list, dim: int, column: str, gaps: str) -> list[list]:
  """A track's points (sorted by time) cut at its gaps: frames must be consecutive integers, times evenly
  spaced. gaps "refuse" raises on the first gap, "split" starts a new segment there."""
  times = np.array([p[1][dim] for p in pts])
  if column == "frame" and not np.all(times == np.round(times)):
    k = int(np.flatnonzero(times != np.round(times))[0])
    raise _fail(path, f"line {pts[k][0]}", f"trajectory {tid!r}: frame {times[k]:g} is not an integer")
  steps = np.diff(times)
  dup = np.flatnonzero(steps == 0)
  if dup.size:
    raise _fail(
      path, f"line {pts[dup[0] + 1][0]}", f"trajectory {tid!r} has two points at time {times[dup[0]]:g}"
    )
  unit = 1.0 if column == "frame" else (steps.min() if steps.size else 1.0)
  cuts = np.flatnonzero(~np.isclose(steps, unit, rtol=1e-6, atol=0)) + 1
  if cuts.size and gaps != "split":
    k = cuts[0]
    raise _fail(
      path,
      f"line {pts[k][0]}",
      f"trajectory {tid!r} jumps from {column} {times[k - 1]:g} to "
      f"{times[k]:g} (a gap); --gaps split cuts tracks at their gaps",
    )
  return [pts[a:b] for a, b in zip([0, *cuts], [*cuts, len(pts)])]


GAPS = ("refuse", "split")


def iter_tracks(
  path: str | os.PathLike, chunk: int, gaps: str = "refuse"
) -> Iterator[tuple[list[str], list[np.ndarray]]]:
  """(ids, trajectories) of a .txt (challenge), .npy, .npz or .csv file, at most `chunk` at a time, each a
  float array (dim, T_i). A .txt is read line by line and a .npy mapped from disk, so memory holds one
  chunk; a .npz or .csv is read whole first (a .csv track's points may lie anywhere in the file).

  ids: a .csv's track ids (with ':k' for the k-th piece of a track split at its gaps), else the indices.
  gaps: what a .csv track whose frames skip some does, "refuse" (an error naming it) or "split".
  """
  if gaps not in GAPS:
    raise ValueError(f"gaps must be one of {GAPS}, got {gaps!r}")
  path = Path(path)
  suffix = path.suffix.lower()
  if suffix == ".txt":
    lines = ((i, fields) for i, fields in _dim_lines(path))
    parts = iter(lambda: [_parse_txt_line(path, i, f) for i, f in itertools.islice(lines, chunk)], [])
  elif suffix == ".npy":
    parts = _iter_npy(path, chunk)
  elif suffix in (".npz", ".csv"):
    ids, trajs = _read_csv(path, gaps) if suffix == ".csv" else (None, _read_npz(path))
    parts = (trajs[k : k + chunk] for k in range(0, len(trajs), chunk))
  else:
    raise _fail(path, "file", f"unsupported suffix {path.suffix!r}; expected .txt, .npy, .npz or .csv")
  done = 0
  for trajs in parts:
    yield (
      ids[done : done + len(trajs)] if suffix == ".csv" else [str(k) for k in range(done, done + len(trajs))],
      trajs,
    )
    done += len(trajs)


def count_tracks(path: str | os.PathLike) -> int | None:
  """How many trajectories a .txt (its lines) or .npy holds, without reading them; None for other formats."""
  path = Path(path)
  suffix = path.suffix.lower()
  if suffix == ".npy":
    arr = _load_array(path, "file", lambda: np.load(path, mmap_mode="r", allow_pickle=False))
    return len(arr) if isinstance(arr, np.ndarray) and arr.ndim else None
  if suffix != ".txt":
    return None
  with _open(path) as f:
    n, last = 0, b"\n"
    for block in iter(lambda: f.read(1 << 20), b""):
      n, last = n + block.count(b"\n"), block[-1:]
    return n + (last != b"\n")


def read_tracks(path: str | os.PathLike, gaps: str = "refuse") -> tuple[list[str], list[np.ndarray]]:
  """All (ids, trajectories) of iter_tracks at once."""
  ids, trajs = [], []
  for i, t in iter_tracks(path, 1 << 30, gaps):
    ids += i
    trajs += t
  return ids, trajs


def read_trajectories(path: str | os.PathLike, gaps: str = "refuse") -> list[np.ndarray]:
  """The trajectories of read_tracks, without their ids."""
  return read_tracks(path, gaps)[1]


def read_labels(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
  """(dims int64, values float64) from `dim;value` lines (Task 1 α or Task 2 model label)."""
  path = Path(path)
  dims, values = [], []
  for i, fields in _dim_lines(path):
    try:
      if len(fields) != 2:
        raise ValueError(f"expected 'dim;value', got {len(fields)} fields")
      dims.append(_parse_dim(fields[0]))
      values.append(_parse_floats(fields[1:])[0])
    except ValueError as e:
      raise _fail(path, f"line {i}", str(e)) from None
  return np.array(dims, dtype=np.int64), np.array(values, dtype=np.float64)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w"):
  """A file written into a temp file beside `path`, which replaces `path` only when the block ends without
  an exception: a failed or interrupted write (Ctrl-C included) leaves `path` as it was and no temp file."""
  path = Path(path)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, mode) as f:
      yield f
    os.replace(tmp, path)
  except BaseException:
    os.unlink(tmp)
    raise


def _write_atomic(path: Path, write, mode: str = "w") -> None:
  with atomic_file(path, mode) as f:
    write(f)


def _write_text(path: Path, lines: list[str]) -> None:
  _write_atomic(path, lambda f: f.write("\n".join(lines) + "\n"))


def _one_dim(path: Path, trajs: list[np.ndarray], fmt: str) -> int:
  dim = trajs[0].shape[0]
  for k, a in enumerate(trajs):
    if a.shape[0] != dim:
      raise _fail(path, f"trajectory {k}", f"a {fmt} holds one dimension; got {a.shape[0]}D beside {dim}D")
  return dim


def write_trajectories(path: str | os.PathLike, trajs: Iterable[np.ndarray]) -> None:
  """Write (dim, T_i) trajectories by suffix: challenge text (.txt), .npy, .npz or long-format .csv.

  .npy holds an (n, dim, T) array, so all shapes must agree; .npz holds ragged ones (module docstring).
  """
  path = Path(path)
  trajs = [np.asarray(a) for a in trajs]
  for k, a in enumerate(trajs):
    try:
      _check_traj(a)
    except ValueError as e:
      raise _fail(path, f"trajectory {k}", str(e)) from None
  if not trajs:
    raise _fail(path, "file", "no trajectories to write")
  suffix = path.suffix.lower()
  if suffix == ".npy":
    shapes = sorted({a.shape for a in trajs})
    if len(shapes) > 1:
      raise _fail(path, "file", f"a .npy holds trajectories of one shape, got {shapes[:3]}...: use .npz")
    _write_atomic(path, lambda f: np.save(f, np.stack(trajs), allow_pickle=False), "wb")
    return
  if suffix == ".npz":
    _one_dim(path, trajs, ".npz")
    _write_atomic(
      path,
      lambda f: np.savez(
        f, positions=np.concatenate(trajs, axis=1), lengths=np.array([a.shape[1] for a in trajs], np.int64)
      ),
      "wb",
    )
    return
  if suffix == ".csv":
    dim = _one_dim(path, trajs, ".csv")
    lines = ["traj,frame," + ",".join("xyz"[:dim])]
    for k, a in enumerate(trajs):
      lines += [
        f"{k},{t}," + ",".join(map(repr, col)) for t, col in enumerate(a.astype(np.float64).T.tolist())
      ]
    _write_text(path, lines)
    return
  # repr of a python float is the shortest string that reads back to the same value
  _write_text(
    path, [";".join([str(a.shape[0]), *map(repr, a.astype(np.float64).ravel().tolist())]) for a in trajs]
  )


def table_lines(columns: Sequence[Sequence]) -> list[str]:
  """CSV rows of equal-length columns (floats written as %.6g)."""
  cell = lambda v: f"{v:.6g}" if isinstance(v, float) else str(v)
  rows = zip(*(np.asarray(c).tolist() if isinstance(c, np.ndarray) else c for c in columns))
  return [",".join(cell(v) for v in row) for row in rows]


def write_table(path: str | os.PathLike, header: Sequence[str], columns: Sequence[Sequence]) -> None:
  """A CSV file of equal-length columns under `header`, written atomically."""
  path = Path(path)
  if len(header) != len(columns) or len({len(c) for c in columns}) != 1:
    raise _fail(
      path, "file", f"{len(header)} names for {len(columns)} columns of lengths {[len(c) for c in columns]}"
    )
  _write_text(path, [",".join(header)] + table_lines(columns))


def label_lines(path: str | os.PathLike, dims, values, fmt: str = "%.6g", first: int = 0) -> list[str]:
  """`dim;value` lines; an error names the entry (numbered from `first`) whose dim or value is wrong."""
  dims, values = np.asarray(dims), np.asarray(values)
  if dims.ndim != 1 or dims.shape != values.shape or len(dims) == 0:
    raise _fail(
      path, "file", f"dims and values must be non-empty 1D of equal length, got {dims.shape}, {values.shape}"
    )
  lines = []
  for k, (d, v) in enumerate(zip(dims.tolist(), values.tolist()), first):
    if d not in (1, 2, 3) or not math.isfinite(v):
      raise _fail(path, f"entry {k}", f"dimension {d!r} must be 1, 2 or 3 and value {v!r} finite")
    lines.append(f"{int(d)};{fmt % v}")
  return lines


def write_labels(
  path: str | os.PathLike,
  dims: Sequence[int] | np.ndarray,
  values: Sequence[float] | np.ndarray,
  fmt: str = "%.6g",
) -> None:
  """Write `dim;value` lines; `fmt` is a %-format for the value ('%d' for Task 2 model labels)."""
  _write_text(Path(path), label_lines(path, dims, values, fmt))
