"""Checkpoints as graphs that run without JAX (ONNX, for onnxruntime) or without andi_jax (StableHLO: a
serialized jax.export.Exported, for jax.export.deserialize).

A graph maps x (B, W) float32, standardised 1D series left-padded to the graph's width W, and length (B,)
int32, each row's real points, to the fold-averaged output: alpha before the seed's x scale and clip
(Task 1), or the class probabilities (Task 2). The batch B is symbolic. The width is fixed, one graph per
width: the trained lengths of seed 001's per-length LSTMs (their windows fill them), the bucket widths up
to `max_length` of an all-lengths model (whose strided stages and word pooling depend on the width).
export.json beside the graphs writes down everything else (the standardisation, the windows, the axis
average, x scale and the clip, the class names, the Task 1 standard-error table) and run_export.py, copied
beside them, does it with numpy.

ONNX graphs come from jax2onnx for the convolutional families. The LSTM's recurrence (a wavefront loop
with a custom VJP) is beyond jax2onnx, and ONNX has the LSTM as one operator: its graph is that operator
per layer and fold, with the weights' gates reordered, run on the unpadded windows of the per-length
method. Every graph is checked against the checkpoint's JAX forward on probe rows before it is written.
"""

import json
import os
import shutil
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

import andi_jax
from andi_jax import infer
from andi_jax.infer import BUCKETS, AllLengthsPredictor, Predictor, bucket_of

FORMATS = ("onnx", "stablehlo")
SUFFIX = {"onnx": ".onnx", "stablehlo": ".stablehlo"}
TOLERANCE = 1e-4  # the largest |exported - JAX| allowed on the probe rows
RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "run_export.py")


class ExportError(ValueError):
  """The checkpoint cannot be exported in the requested format; the message says why."""


def _fold(params_F, f):
  return jax.tree.map(lambda a: np.asarray(a[f]), params_F)


def _forward(model, params_F, classify: bool):
  """(x_BxW, length_B) -> the fold-averaged output, the folds unrolled with their parameters as constants."""
  folds = [_fold(params_F, f) for f in range(len(jax.tree.leaves(params_F)[0]))]

  def forward(x_BxW, length_B):
    outs = [model.apply({"params": p}, x_BxW, length_B, train=False) for p in folds]
    outs = [jax.nn.softmax(o) if classify else o[:, 0] for o in outs]
    return sum(outs[1:], outs[0]) / len(outs)

  return forward


def _specs(width):
  (batch,) = jax.export.symbolic_shape("B")
  return jax.ShapeDtypeStruct((batch, width), jnp.float32), jax.ShapeDtypeStruct((batch,), jnp.int32)


def _stablehlo(forward, width) -> bytes:
  return jax.export.export(jax.jit(forward))(*_specs(width)).serialize()


def _onnx_jax2onnx(forward, width) -> bytes:
  import logging

  # warnings that say nothing about the graph: a traceback per absent image library of jax2onnx's example
  # plugins, and onnx_ir's note for each untyped intermediate value it leaves out of the file
  for name in ("jax2onnx", "onnx_ir"):
    logging.getLogger(name).setLevel(logging.ERROR)
  from jax2onnx import to_onnx

  return to_onnx(forward, _specs(width), input_names=["x", "length"], output_names=["y"]).SerializeToString()


def _onnx_lstm(config, params_F, width, classify: bool) -> bytes:
  """ONNX's LSTM operator, one per layer and fold: gates (i, f, g, o) reordered to ONNX's (i, o, f, c),
  weights transposed to (gates, inputs), zero initial state; rows must be unpadded (length == width)."""
  from onnx import TensorProto, helper, numpy_helper

  H, L = config.hidden, config.layers
  order = np.concatenate([np.arange(0, H), np.arange(3 * H, 4 * H), np.arange(H, 3 * H)])
  nodes, inits = [], []

  def const(name, value, dtype=np.float32):
    inits.append(numpy_helper.from_array(np.asarray(value, dtype), name))
    return name

  axis = [const(f"axis{a}", [a], np.int64) for a in range(3)]
  nodes.append(helper.make_node("Transpose", ["x"], ["x_TxB"], perm=[1, 0]))
  nodes.append(helper.make_node("Unsqueeze", ["x_TxB", axis[2]], ["x_TxBx1"]))
  outs = []
  for f in range(len(params_F["b_0"])):
    p = _fold(params_F, f)
    h = "x_TxBx1"
    for l in range(L):
      w = const(f"W_{f}_{l}", p[f"wx_{l}"][:, order].T[None])
      r = const(f"R_{f}_{l}", p[f"wh_{l}"][:, order].T[None])
      b = const(f"B_{f}_{l}", np.concatenate([p[f"b_{l}"][order], np.zeros(4 * H)])[None])
      y, last = f"y_{f}_{l}", f"h_{f}_{l}"
      nodes.append(helper.make_node("LSTM", [h, w, r, b], [y, last], hidden_size=H))
      nodes.append(helper.make_node("Squeeze", [y, axis[1]], [f"seq_{f}_{l}"]))
      h = f"seq_{f}_{l}"
    nodes.append(helper.make_node("Squeeze", [last, axis[0]], [f"top_{f}"]))
    k, c = const(f"head_w_{f}", p["Dense_0"]["kernel"]), const(f"head_b_{f}", p["Dense_0"]["bias"])
    nodes.append(helper.make_node("Gemm", [f"top_{f}", k, c], [f"logits_{f}"]))
    if classify:
      nodes.append(helper.make_node("Softmax", [f"logits_{f}"], [f"out_{f}"], axis=-1))
    else:
      nodes.append(helper.make_node("Squeeze", [f"logits_{f}", axis[1]], [f"out_{f}"]))
    outs.append(f"out_{f}")
  nodes.append(helper.make_node("Mean", outs, ["y"]))
  graph = helper.make_graph(
    nodes,
    "andi_jax_lstm",
    [
      helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", width]),
      helper.make_tensor_value_info("length", TensorProto.INT32, ["B"]),
    ],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", config.outputs] if classify else ["B"])],
    inits,
  )
  return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def available() -> bool:
  """Are the ONNX converter and runtime installed (the export extra)?"""
  try:
    import jax2onnx  # noqa: F401
    import onnxruntime  # noqa: F401
  except ImportError:
    return False
  return True


def load_graph(fmt, path):
  """A written graph as a call (x, length) -> outputs: onnxruntime, or the deserialized jax.export graph."""
  if fmt == "onnx":
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return lambda x, length: session.run(None, {"x": x, "length": length})[0]
  with open(path, "rb") as f:
    exported = jax.export.deserialize(bytearray(f.read()))
  return exported.call


def _probe(width, per_length: bool, rows: int = 5):
  """Standardised rows of random walks: full width (per-length), else lengths across the bucket."""
  rng = np.random.default_rng(width)
  lo = width if per_length else max(width // 2 + 1, 10)
  length = np.linspace(lo, width, rows).round().astype(np.int32)
  x = np.zeros((rows, width), np.float32)
  for i, n in enumerate(length):
    walk = np.cumsum(rng.standard_normal(n))
    x[i, width - n :] = (walk - walk.mean()) / walk.std()
  return x, length


def widths_of(predictor, max_length: int) -> list[int]:
  if isinstance(predictor, Predictor):
    return [int(T) for T in predictor.lengths]
  top = bucket_of(max_length)
  return [b for b in BUCKETS if b <= top] + list(range(2 * BUCKETS[-1], top + 1, BUCKETS[-1]))


def export(checkpoint, fmt: str, out: str, max_length: int = 1024, source: str | None = None) -> dict:
  """Writes the graphs of the checkpoint directory `checkpoint` (or a loaded predictor, read from `source`)
  in `fmt` into the new directory `out`, with export.json and run_export.py; returns export.json's content.
  ExportError for a request that cannot be met; `out` appears only whole."""
  if fmt not in FORMATS:
    raise ExportError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
  if os.path.exists(out):
    raise ExportError(f"{out}: already exists; the export writes a new directory")
  if isinstance(checkpoint, (str, os.PathLike)):
    predictor, source = infer.load(checkpoint), checkpoint
  else:
    predictor = checkpoint
  if not isinstance(predictor, (Predictor, AllLengthsPredictor)):
    raise ExportError(f"{type(predictor).__name__} has no export")
  per_length = isinstance(predictor, Predictor)
  model, classify = predictor.model, predictor.task == 2
  name = type(model).__name__
  if fmt == "onnx" and name == "LSTM" and not per_length:
    raise ExportError(
      "an all-lengths LSTM has no ONNX export: its rows are left-padded, which ONNX's LSTM operator does "
      "not take, and jax2onnx cannot lower the wavefront recurrence; use --format stablehlo"
    )
  graphs = {}
  parent = os.path.dirname(os.path.abspath(out))
  tmp = tempfile.mkdtemp(dir=parent, prefix=".export-")
  try:
    for width in widths_of(predictor, max_length):
      params_F = predictor.params[width] if per_length else predictor.params
      forward = _forward(model, params_F, classify)
      if fmt == "stablehlo":
        blob = _stablehlo(forward, width)
      elif name == "LSTM":
        blob = _onnx_lstm(model.config, params_F, width, classify)
      else:
        blob = _onnx_jax2onnx(forward, width)
      file = os.path.join(tmp, f"w{width}{SUFFIX[fmt]}")
      with open(file, "wb") as f:
        f.write(blob)
      x, length = _probe(width, per_length)
      got = np.asarray(load_graph(fmt, file)(x, length))
      gap = float(np.abs(got - np.asarray(jax.jit(forward)(x, length))).max())
      if not gap <= TOLERANCE:
        raise ExportError(f"the {fmt} graph of {name} at width {width} differs from JAX by {gap:.3g}")
      graphs[str(width)] = os.path.basename(file)
    meta = _meta(predictor, fmt, graphs, source)
    with open(os.path.join(tmp, "export.json"), "w") as f:
      json.dump(meta, f, indent=1)
    shutil.copy(RUNNER, os.path.join(tmp, "run_export.py"))
    os.replace(tmp, out)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return meta


def _meta(predictor, fmt, graphs, source) -> dict:
  per_length = isinstance(predictor, Predictor)
  calibration = getattr(predictor, "calibration", None)
  return {
    "format": fmt,
    "model": type(predictor.model).__name__,
    "task": predictor.task,
    "graphs": graphs,
    "graph_per": "trained length" if per_length else "bucket width",
    "inputs": {
      "x": "(B, W) float32: standardised 1D series (one per axis of each trajectory), left-padded with zeros",
      "length": "(B,) int32: each row's real points (= W for a per-length graph)",
    },
    "output": "(B,) alpha before scale and clip" if predictor.task == 1 else "(B, C) class probabilities",
    "preprocessing": [
      "each axis is a series of its own; a series or window x (float64) becomes "
      "(y - mean(y)) / std(y) with y = x * 2**-e, e from frexp(max |x|), then float32; a constant or "
      "non-finite series has no answer",
      "per-length: the graph of the longest trained length T_n <= T; if T_n < T the graph's mean on the "
      "first and the last T_n points, each standardised on its own"
      if per_length
      else "all-lengths: the graph of the narrowest width >= T",
    ],
    "postprocessing": "alpha = clip(mean over axes (output) * scale, clip)"
    if predictor.task == 1
    else "probabilities = mean over axes (output); label = argmax",
    "scale": predictor.scale if per_length else 1.0,
    "clip": list(predictor.clip if per_length else infer.CLIP),
    "classes": list(predictor.classes) if predictor.task == 2 else None,
    "calibration": calibration,
    "checkpoint": os.path.abspath(source) if source is not None else None,
    "andi_jax": andi_jax.__version__,
    "jax": jax.__version__,
  }
