#!/usr/bin/env bash
# Installs the PyTorch reference (xtask/torch/requirements.txt) into a virtual environment and prints
# the python to run. Used by `cargo xtask bench train` (side-by-side timing), `cargo xtask fixtures`
# and crates/lt-train/reference/lenet_torch.py; the tests and CI never need it.
#
# usage: xtask/torch/setup.sh     -> prints the path of the venv's python
# The venv: $LT_TORCH_VENV if set, else target/torch-venv in this repository (ignored by git).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${LT_TORCH_VENV:-$here/../../target/torch-venv}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import torch, numpy' 2>/dev/null; then
  echo "installing $(grep -v '^#' "$here/requirements.txt" | tr '\n' ' ')into $venv (several GB) ..." >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip >&2
  "$venv/bin/pip" install -q -r "$here/requirements.txt" >&2
fi
echo "$(cd "$venv" && pwd)/bin/python"
