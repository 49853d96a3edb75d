#!/usr/bin/env bash
# fer against the PyTorch reference of the same model, batch and optimizer, in one command.
#   bash bench/fer-vs-pytorch.sh [cnn|dnn] [train_steps]
# Installs torch (CPU use only) into bench/.venv on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-cnn}
steps=${2:-3}
if [ ! -x bench/.venv/bin/python ]; then python3 -m venv bench/.venv; fi
bench/.venv/bin/python -c "import torch" 2>/dev/null || bench/.venv/bin/pip install -q numpy torch
cargo build --release -q -p fer-cli
out=$(mktemp)
./target/release/fer bench --model "$model" --train-steps "$steps" --json | tee -a "$out"
for mode in fp32 channels_last bf16; do
  bench/.venv/bin/python bench/torch_reference.py bench --model "$model" --mode "$mode" --train-steps "$steps" --json | tee -a "$out"
done
bench/.venv/bin/python - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
fer = rows[0]
print(f"\n{'implementation':38} {'train img/s':>12} {'infer img/s':>12} {'b1 ms':>8}   fer/that: train  infer  latency(that/fer)")
for r in rows:
    print(f"{r['impl']:38} {r['train_img_per_s']:12.1f} {r['infer_img_per_s']:12.1f} {r['latency_b1_ms']:8.2f}   "
          f"{fer['train_img_per_s']/r['train_img_per_s']:14.2f}x {fer['infer_img_per_s']/r['infer_img_per_s']:5.2f}x {r['latency_b1_ms']/fer['latency_b1_ms']:7.2f}x")
PY
