#!/bin/sh
# The feature service's whole lock, torch included, into a new venv at $1: the runtime of
# the resnext50-frcnn images, and the converter that turns the lite models into ONNX once
# at build time (the lite image itself carries no torch). Run from the build's WORKDIR,
# which holds the locks.
#   TORCH_INDEX empty: PyPI's torch, whose Linux wheels bundle CUDA, every file hashed
#                      (requirements/feature.txt).
#   TORCH_INDEX set:   torch and torchvision at the versions feature.txt pins, from that
#                      index (PyTorch's CPU wheels), and the rest, hashed, from
#                      feature-cpu.txt (tools/locks.py says why those two have no hash).
set -eu
venv=$1
python -m venv "$venv"
if [ -z "${TORCH_INDEX:-}" ]; then
  "$venv/bin/pip" install --require-hashes --no-deps -r feature.txt || {
    echo "feature image: torch's CUDA wheels (requirements/feature.txt) cannot be had from this package index; build the CPU image (make images) or pass TORCH_INDEX=<a CPU wheel index>" >&2
    exit 1
  }
else
  grep -E '^(torch|torchvision)==' feature.txt | cut -d' ' -f1 \
    | xargs "$venv/bin/pip" install --no-deps --index-url "$TORCH_INDEX"
  "$venv/bin/pip" install --require-hashes --no-deps -r feature-cpu.txt
fi
