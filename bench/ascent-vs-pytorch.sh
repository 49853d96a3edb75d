#!/usr/bin/env bash
# Gradient ascent (20 steps, all filters batched) of fer against the PyTorch reference, one command.
#   bash bench/ascent-vs-pytorch.sh RUN_DIR [block5_filters]
# RUN_DIR is any fer run of the report's CNN (speed does not depend on the weights).
set -euo pipefail
cd "$(dirname "$0")/.."
run=$1
deep=${2:-512}
bench/.venv/bin/python -c "import torch" 2>/dev/null || bench/.venv/bin/pip install -q numpy torch
cargo build --release -q -p fer-cli
for spec in "block1.act 64" "block5.act $deep"; do
  set -- $spec
  echo "== $1, $2 filters, 20 steps"
  ./target/release/fer explain ascent --run "$run" --layer "$1" --filters "0..$2" --steps 20 --out "$(mktemp -d)/ascent.png"
  bench/.venv/bin/python bench/torch_reference.py ascent --layer "$1" --filters "$2" --steps 20
done
