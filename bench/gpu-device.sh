#!/usr/bin/env bash
# The GPU check, prepared here and run on a lent GPU machine (which reaches no registry and takes
# at most ~60 MiB per call). Three phases, one file:
#
#   bash bench/gpu-device.sh prepare [DATA]   # here: build fer and xtask with CUDA, strip and
#                                             # compress them into target/gpu/, and pack DATA
#                                             # (default ../shared/fer2013) as target/gpu/fer2013.tar
#   then, on the device, three calls (carry the named path; ignored outputs stay between calls):
#   run(carry=["target/gpu/data"]) : bash bench/gpu-device.sh data      # unpack the faces
#   run(carry=["target/gpu/fer"])  : bash bench/gpu-device.sh bench     # breakdown + PyTorch
#   run(carry=["target/gpu/xtask"]): bash bench/gpu-device.sh report    # full protocol, <= 9 min
#
# What comes back lands under $OUT: bench.txt (fer bench --device cuda --breakdown, both paths),
# torch.txt (PyTorch fp32 / channels_last / bf16 on the same GPU, when torch is installed there),
# nvidia-smi.txt, and for `report` the report's REPORT.md, stages/*.json and run histories.
set -euo pipefail
cd "$(dirname "$0")/.."
phase=${1:-}
OUT=${OUT:-target/gpu/out}
mkdir -p "$OUT"

case "$phase" in
prepare)
  data=${2:-../shared/fer2013}
  cargo xtask llvm
  cargo build --release --locked -p fer-cli --features cuda
  cargo build --release --locked -p xtask --features cuda
  mkdir -p target/gpu/fer target/gpu/xtask target/gpu/data
  for bin in fer xtask; do
    strip -o "target/gpu/$bin/$bin" "target/release/$bin"
    zstd -19 --long=27 -T0 -q -f "target/gpu/$bin/$bin" -o "target/gpu/$bin/$bin.zst"
    rm "target/gpu/$bin/$bin"
  done
  tar -C "$(dirname "$data")" -cf target/gpu/data/fer2013.tar "$(basename "$data")"
  du -sh target/gpu/*/*
  echo "each of target/gpu/{data,fer,xtask} must stay under ~60 MiB: carry them one per call"
  ;;
data)
  mkdir -p target/gpu/faces
  tar -C target/gpu/faces -xf target/gpu/data/fer2013.tar
  find target/gpu/faces -name '*.jpg' | wc -l | tee "$OUT/faces.txt"
  ;;
bench)
  nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
  zstd -d -q -f --long=27 target/gpu/fer/fer.zst -o target/gpu/fer/fer && chmod +x target/gpu/fer/fer
  fer=target/gpu/fer/fer
  # A clear error, not a panic, is part of the check: the CPU path must still work too.
  $fer bench --model cnn --device cuda --train-steps 20 --infer-batches 50 --breakdown 2>&1 | tee "$OUT/bench.txt"
  $fer bench --model dnn --device cuda --train-steps 50 --infer-batches 50 2>&1 | tee -a "$OUT/bench.txt"
  if python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
    for mode in fp32 channels_last bf16; do
      python3 bench/torch_reference.py bench --model cnn --mode "$mode" --device cuda --train-steps 50 --infer-batches 50 2>&1 | tee -a "$OUT/torch.txt" || true
    done
  else
    echo "no PyTorch with CUDA on this machine: compare with the figures in issue 11" | tee "$OUT/torch.txt"
  fi
  ;;
report)
  zstd -d -q -f --long=27 target/gpu/xtask/xtask.zst -o target/gpu/xtask/xtask && chmod +x target/gpu/xtask/xtask
  data=$(find target/gpu/faces -mindepth 1 -maxdepth 1 -type d | head -1)
  start=$(date +%s)
  # The device call ends at 600 s: stop at 540 s and bring back whatever stages finished.
  timeout 540 target/gpu/xtask/xtask reproduce-report --data "$data" --profile full --device cuda --out target/gpu/report 2>&1 | tee "$OUT/report-log.txt" || true
  echo "wall seconds: $(( $(date +%s) - start ))" | tee -a "$OUT/report-log.txt"
  mkdir -p "$OUT/report"
  cp -r target/gpu/report/REPORT.md target/gpu/report/stages "$OUT/report/" 2>/dev/null || true
  for h in target/gpu/report/runs/*/history.csv target/gpu/report/runs/*/member-*/history.csv; do
    [ -f "$h" ] && cp "$h" "$OUT/report/$(echo "${h#target/gpu/report/runs/}" | tr / -)"
  done
  ;;
*)
  sed -n 2,17p "$0"
  exit 2
  ;;
esac
