#!/usr/bin/env bash
# Per-frame time of `fer serve` at webcam sizes against OpenCV's face detector, in one run
# (bench/webcam_frames.py says what is measured). OpenCV 4: version 5 moved the Haar cascades out
# of the main package.
#   bash bench/webcam-frames.sh [FER_BINARY] [extra fer serve flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
FER=${1:-target/release/fer}
shift || true
PORT=${PORT:-8050}
[ -x "$FER" ] || cargo build --release -p fer-cli
if [ ! -x bench/.venv/bin/python ]; then python3 -m venv bench/.venv; fi
bench/.venv/bin/python -c "import cv2; cv2.CascadeClassifier" 2>/dev/null || bench/.venv/bin/pip install -q "opencv-python-headless<5" "numpy<3"
"$FER" serve --port "$PORT" --log off "$@" > /dev/null &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null; wait $SERVER 2>/dev/null' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/api/health" > /dev/null 2>&1 && break; sleep 0.2; done
grep -m1 "model name" /proc/cpuinfo
bench/.venv/bin/python bench/webcam_frames.py --server "127.0.0.1:$PORT" --repeat "${REPEAT:-15}"
