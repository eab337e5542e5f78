#!/usr/bin/env bash
# Build the wheels that a GPU machine's stock Python lacks, into .whl-gpu/ (ignored by git; the device
# tool carries it: name it in `carry`). Run here, on a machine that reaches PyPI, from the repository root:
#   bash bench/gpu/prepare.sh
# Versions are the ones this checkout's .venv holds (the tested pins); the targets are CPython 3.12 on
# x86-64 Linux (the H200 image: torch 2.11 + CUDA 13, transformers 5.17, accelerate, peft; no trl,
# deepspeed, datasets). deepspeed is source-only on PyPI: DS_BUILD_OPS=0 makes a pure-Python wheel whose
# ops compile on the GPU machine when first used.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-.venv/bin/python}
OUT=.whl-gpu
# what trl, datasets, deepspeed and align need beyond the GPU image's packages (see docs/benchmarks.md)
NAMES="trl datasets dill multiprocess hjson pydantic pydantic_core annotated-types typing-inspection typing_extensions datasketch"

rm -rf "$OUT" && mkdir -p "$OUT"
version() {  # the installed version of a distribution, from the venv
  "$PYTHON" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1"
}
pins=()
for name in $NAMES; do pins+=("$name==$(version "$name")"); done
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform any -d "$OUT" "${pins[@]}"
DS_BUILD_OPS=0 "$PYTHON" -m pip wheel --quiet --no-deps --no-build-isolation -w "$OUT" "deepspeed==$(version deepspeed)"
ls -l "$OUT"
du -sh "$OUT"
