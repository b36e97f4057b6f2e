#!/bin/sh
# One-step set-up on a machine with only Python 3.11: a virtual environment in .venv with
# andi-jax, its tests' tools, the ONNX export's, and a working andi-datasets beside numpy 2 / jax.
set -e
cd "$(dirname "$0")"
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test,export]"
# Their declared numpy<2 pins are stale: installed without them they run on numpy 2 (REFERENCES.md).
.venv/bin/python -m pip install -q --no-deps andi-datasets==2.1.13 stochastic==0.6.0
# The ONNX converter without its pins (pyproject.toml's export extra says why).
.venv/bin/python -m pip install -q --no-deps jax2onnx==0.17.1
