#!/usr/bin/env bash
# fer (burn ops only, and fer-kernels) against the PyTorch reference of the same model, batch and
# optimizer, back to back in one command, with the ratios; then fer's per-operation breakdown.
#   bash bench/fer-vs-pytorch.sh [cnn|dnn] [train_steps] [--breakdown]
# Installs torch (CPU use only) into bench/.venv on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-cnn}
steps=${2:-3}
breakdown=${3:-}
if [ ! -x bench/.venv/bin/python ]; then python3 -m venv bench/.venv; fi
bench/.venv/bin/python -c "import torch" 2>/dev/null || bench/.venv/bin/pip install -q numpy torch
cargo build --release -q -p fer-cli
out=$(mktemp)
./target/release/fer bench --model "$model" --train-steps "$steps" --path both --json | grep '"impl"' | tee -a "$out"
# fer-kernels with bf16 GEMMs: convolutions and dense layers, on AMX tiles or AVX512-BF16 (f32 on CPUs with neither; the last line says which ran).
./target/release/fer bench --model "$model" --train-steps "$steps" --precision bf16 --json | grep '"impl"' | sed 's/"impl":"fer (fer-kernels on burn flex)"/"impl":"fer (fer-kernels, bf16 GEMMs)"/' | tee -a "$out"
for mode in fp32 channels_last bf16; do
  bench/.venv/bin/python bench/torch_reference.py bench --model "$model" --mode "$mode" --train-steps "$steps" --json | tee -a "$out"
done
bench/.venv/bin/python - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
fer, ferb = rows[1], rows[2]  # fer-kernels f32 and bf16 (row 0 is burn's ops only)
def ratios(f, r):
    return f"{f['train_img_per_s']/r['train_img_per_s']:6.2f}x {f['infer_img_per_s']/r['infer_img_per_s']:6.2f}x {r['latency_b1_ms']/f['latency_b1_ms']:6.2f}x"
print(f"\n{'implementation':40} {'train img/s':>12} {'infer img/s':>12} {'b1 ms':>8}   fer f32 vs it: train  infer  b1     fer bf16 vs it: train  infer  b1")
for r in rows:
    print(f"{r['impl']:40} {r['train_img_per_s']:12.1f} {r['infer_img_per_s']:12.1f} {r['latency_b1_ms']:8.2f}   {ratios(fer, r):>28}   {ratios(ferb, r):>28}")
print(f"(ratios above 1 mean fer is faster; latency ratio = its latency / fer's; the bf16 row ran {ferb.get('precision', '?')}, its products on {ferb.get('bf16_kernel', '?')})")
PY
if [ "$breakdown" = "--breakdown" ]; then
  ./target/release/fer bench --model "$model" --train-steps "$steps" --infer-batches 1 --latency-runs 1 --path fast --breakdown | sed -n '/where a training step/,$p'
fi
