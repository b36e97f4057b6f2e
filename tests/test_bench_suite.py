"""The benchmark suite on tiny sizes; timings are never asserted, only that every part ran and measured what
it names."""

import dataclasses
import json

import jax
import numpy as np
import pytest
from jax.extend import core

from andi_jax import export as graph_export
from andi_jax.bench import measure as bench
from andi_jax.bench import suite as bench_suite
from andi_jax.bench import torch_reference as bench_torch

TINY = bench_suite.SuiteConfig(
  lengths=(10,),
  families=("lstm",),
  folds=2,
  batch=32,
  repeats=1,
  ragged_n=30,
  ragged_max=30,
  generation_T=(20,),
  generation_n=10,
  generation_models=("sbm",),
  onthefly_T=(10,),
  onthefly_buckets=("lstm",),
  onthefly_widths=(16, 32),
  tta_n=1_000,
  tta_target=5.0,
  tta_max_epochs=1,
  scaling_models=(1, 2, 100_000),
  export_families=("lstm", "conv_transformer"),
  export_T=(10,),
  export_batches=(1, 8),
)


def test_suite_writes_every_section(tmp_path):
  results = bench_suite.run(TINY, tmp_path, mode="quick", log=lambda row: None)
  report = (tmp_path / "RESULTS.md").read_text()
  for section in (
    "## 1. Training",
    "## 2. The seed's PyTorch",
    "## 3. End-to-end",
    "## 4. Data generation",
    "generated inside the step",
    "## 5. Time to validation",
    "## 6. Ensemble scaling",
  ):
    assert section in report
  assert (tmp_path / "results.png").stat().st_size > 0
  saved = json.loads((tmp_path / "results.json").read_text())
  assert [(r["family"], r["T"]) for r in saved["throughput"]] == [("lstm", 10)]
  assert all(r["one"] > 0 and r["ensemble"] > 0 and r["sequential"] > 0 for r in saved["throughput"])
  assert saved["time_to_accuracy"]["jax_5fold"]["reached"]  # a target of 5.0 is met after one epoch
  assert saved["scaling"][-1]["skipped"].startswith("needs about")  # 100,000 models' states exceed the bound
  assert all(("torch_per_s" in r) == bench_torch.available() for r in saved["scaling"][:2])
  assert ("torch" in saved) == bench_torch.available()
  assert ("| 10 |" in report.split("## 2.")[1].split("## 3.")[0]) == bench_torch.available()
  assert [r["model"] for r in saved["generation"]] == ["sbm", "recipe"]
  assert [r["T"] for r in saved["onthefly"]] == [10, "10-16", "17-32", "10-32, mix"]
  assert all(r["stored"] > 0 and r["onthefly"] > 0 and r["onthefly_shared"] > 0 for r in saved["onthefly"])
  assert results["mode"] == "quick"
  if graph_export.available():
    assert "### Exported graphs" in report
    speed, artefacts = saved["export"]["speed"], saved["export"]["artefacts"]
    assert [(r["family"], r["batch"]) for r in speed] == [
      ("lstm", 1),
      ("lstm", 8),
      ("conv_transformer", 1),
      ("conv_transformer", 8),
    ]
    assert all(r[side] > 0 for r in speed for side in ("jax", "onnx", "stablehlo"))
    assert [(r["family"], r["format"], r["graphs"]) for r in artefacts] == [
      ("lstm", "onnx", 1),
      ("lstm", "stablehlo", 1),
      ("conv_transformer", "onnx", 1),
      ("conv_transformer", "stablehlo", 1),
    ]
    assert all(r["mb"] > 0 and r["seconds"] > 0 for r in artefacts)

  # --only: one section re-measured into this results.json, the rest kept; another config or machine refused
  again = bench_suite.run(TINY, tmp_path, mode="quick", log=lambda row: None, only=("scaling",))
  assert again["throughput"] == saved["throughput"] and list(again["remeasured"]) == ["scaling"]
  assert "Section scaling re-measured alone" in (tmp_path / "RESULTS.md").read_text()
  with pytest.raises(ValueError, match="another configuration"):
    bench_suite.run(dataclasses.replace(TINY, batch=64), tmp_path, mode="quick", only=("scaling",))
  # a setting of the re-measured section alone may change; another section's may not
  with pytest.raises(ValueError, match="another configuration"):
    bench_suite.run(dataclasses.replace(TINY, tta_n=800), tmp_path, mode="quick", only=("scaling",))
  bench_suite.run(
    dataclasses.replace(TINY, scaling_models=(1,)),
    tmp_path,
    mode="quick",
    log=lambda row: None,
    only=("scaling",),
  )
  assert [r["models"] for r in json.loads((tmp_path / "results.json").read_text())["scaling"]] == [1]
  # a results.json written before a SuiteConfig field existed ran with that field's default: accepted
  older = json.loads((tmp_path / "results.json").read_text())
  del older["config"]["onthefly_families"]
  (tmp_path / "results.json").write_text(json.dumps(older))
  bench_suite.run(TINY, tmp_path, mode="quick", log=lambda row: None, only=("scaling",))
  assert "onthefly_families" in json.loads((tmp_path / "results.json").read_text())["config"]
  (tmp_path / "results.json").write_text(json.dumps({**older, "machine": "another host"}))
  with pytest.raises(ValueError, match="another machine"):
    bench_suite.run(TINY, tmp_path, mode="quick", only=("scaling",))
  with pytest.raises(ValueError, match="unknown sections"):
    bench_suite.run(TINY, tmp_path, mode="quick", only=("speed",))


def _dot_flops(jaxpr) -> int:
  """FLOPs of a jaxpr's dot_generals, nested jaxprs included, a scan's body counted once per trip."""
  total = 0
  for eqn in jaxpr.eqns:
    assert eqn.primitive.name != "while", "a loop of unknown trip count"
    if eqn.primitive.name == "dot_general":
      (contract, _), _ = eqn.params["dimension_numbers"]
      k = np.prod([eqn.invars[0].aval.shape[d] for d in contract])
      total += 2 * int(np.prod(eqn.outvars[0].aval.shape) * k)
    trips = eqn.params["length"] if eqn.primitive.name == "scan" else 1
    subs = [v for p in eqn.params.values() for v in (p if isinstance(p, (tuple, list)) else [p])]
    total += trips * sum(
      _dot_flops(getattr(v, "jaxpr", v)) for v in subs if isinstance(v, (core.Jaxpr, core.ClosedJaxpr))
    )
  return total


def test_lstm_products_step_does_the_training_steps_products():
  # its time is reported as the ceiling on the LSTM's training step: it must do that step's products, all
  # of them
  products, step = bench.lstm_products_step(100, 2, 32), bench.ensemble_step("lstm", 100, 2, 32)
  # the step's extras: products skipped where a hidden state is a known zero, the input's and head's matvecs
  assert _dot_flops(jax.make_jaxpr(products)().jaxpr) == pytest.approx(
    _dot_flops(jax.make_jaxpr(step)().jaxpr), rel=0.01
  )
  assert np.isfinite(np.asarray(jax.tree.leaves(bench.lstm_products_step(10, 2, 32)())[0])).all()
