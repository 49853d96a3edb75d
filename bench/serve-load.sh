#!/usr/bin/env bash
# `fer serve` under load, with wrk (Debian's `wrk`), against the model built into fer and the
# fixture photos (astronaut.jpg: one face; three-faces.jpg: three):
#   1. 1, 8, 32 and 128 concurrent clients, DURATION s each, per photo;
#   2. batching: 32 clients with and without --batch-wait 0 (each request alone), on the
#      three-face photo and on a 48x48 face crop sent with ?detect=false (the model alone);
#   3. slow clients: 32 clients while 100 slowloris connections send a byte a second;
#   4. LONG s at 32 clients, the server's RSS sampled every minute.
# Prints a Markdown table (also in $OUT/serve-load.md): requests/s, faces/s, p50/p95/p99 latency
# of all answers and of the accepted ones (200, from the server's log), answers by status,
# socket errors, and the server's RSS at the start and end of each run.
#
#   bash bench/serve-load.sh [FER_BINARY]     (default: target/release/fer, built if missing)
#   DURATION=60 LONG=600 LEVELS="1 8 32 128" OUT=target/serve-load bash bench/serve-load.sh
#   SECTIONS="levels batching slow long" (the default: all four parts), e.g. SECTIONS=batching
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-60}
LONG=${LONG:-600}
LEVELS=${LEVELS:-"1 8 32 128"}
OUT=${OUT:-target/serve-load}
PORT=${PORT:-8049}
FER=${1:-target/release/fer}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
[ -x "$FER" ] || cargo build --release -p fer-cli
mkdir -p "$OUT"
: > "$OUT/runs.jsonl"
ASTRONAUT=fixtures/photos/astronaut.jpg
THREE=fixtures/photos/three-faces.jpg
URL="http://127.0.0.1:$PORT/api/predict"
SERVER_PID=""

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$SERVER_PID/status"; }

start_server() { # extra flags...
  stop_server
  "$FER" serve --port "$PORT" --log json "$@" > "$OUT/server.out" 2> "$OUT/server.log" &
  SERVER_PID=$!
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$PORT/api/health" > /dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "fer serve did not start: $(cat "$OUT/server.log")" >&2
  exit 1
}

stop_server() {
  if [ -n "$SERVER_PID" ]; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  fi
}
trap stop_server EXIT

run() { # label server-flags clients seconds photo [query]
  local label=$1 flags=$2 clients=$3 seconds=$4 photo=$5 query=${6:-}
  local log_from rss_start rss_end threads=$(( $3 < 2 ? $3 : 2 ))
  log_from=$(wc -l < "$OUT/server.log")
  rss_start=$(rss_kb)
  echo "== $label: $clients clients, $seconds s, $(basename "$photo") ($(date -u +%H:%M:%S))" >&2
  wrk -t "$threads" -c "$clients" -d "${seconds}s" --timeout 60s -s bench/serve-load.lua "$URL$query" -- "$photo" > "$OUT/wrk.txt" 2>&1
  rss_end=$(rss_kb)
  python3 - "$label" "$flags" "$clients" "$(basename "$photo")" "$rss_start" "$rss_end" "$log_from" "$OUT" <<'PY'
import json, sys
label, flags, clients, photo, rss_start, rss_end, log_from, out = sys.argv[1:]
wrk = next(json.loads(l.split(" ", 1)[1]) for l in open(f"{out}/wrk.txt") if l.startswith("WRK_JSON"))
accepted = []
for line in open(f"{out}/server.log").readlines()[int(log_from):]:
    try:
        entry = json.loads(line)
    except ValueError:
        continue
    if entry.get("message") == "request" and entry.get("status") == 200:
        accepted.append(entry["ms"])
accepted.sort()
pct = lambda p: accepted[min(len(accepted) - 1, int(p / 100 * len(accepted)))] if accepted else float("nan")
ok = wrk["statuses"].get("200", 0)
row = dict(label=label, flags=flags, clients=int(clients), photo=photo, seconds=wrk["seconds"],
           requests_per_s=ok / wrk["seconds"], faces_per_s=wrk["faces"] / wrk["seconds"],
           p50_ms=wrk["p50_ms"], p95_ms=wrk["p95_ms"], p99_ms=wrk["p99_ms"],
           accepted_p50_ms=pct(50), accepted_p95_ms=pct(95), accepted_p99_ms=pct(99),
           statuses=wrk["statuses"], socket_errors=wrk["socket_errors"],
           rss_start_mb=int(rss_start) / 1024, rss_end_mb=int(rss_end) / 1024)
open(f"{out}/runs.jsonl", "a").write(json.dumps(row) + "\n")
print(json.dumps(row), file=sys.stderr)
PY
}

"$FER" --version >&2 || true
grep -m1 "model name" /proc/cpuinfo >&2
echo "cores: $(nproc)" >&2

SECTIONS=${SECTIONS:-"levels batching slow long"}
has() { [[ " $SECTIONS " == *" $1 "* ]]; }

# 1. Concurrency levels, default flags.
if has levels; then
  start_server
  for photo in "$ASTRONAUT" "$THREE"; do
    for c in $LEVELS; do run "load" "default" "$c" "$DURATION" "$photo"; done
  done
fi

# 2. Batching: the same 32 clients with each request classified alone, on a photo (the face
# search dominates) and on a face crop with ?detect=false (the model alone).
if has batching; then
  CROP_DIR=$(mktemp -d)
  "$FER" data synth "$CROP_DIR/faces" --per-class 1 > /dev/null
  CROP=$(find "$CROP_DIR/faces" -name '*.png' | sort | head -1)
  start_server
  run "batching on" "default" 32 "$DURATION" "$THREE"
  run "batching on" "default" 32 "$DURATION" "$CROP" "?detect=false"
  start_server --batch-wait 0
  run "batching off" "--batch-wait 0" 32 "$DURATION" "$THREE"
  run "batching off" "--batch-wait 0" 32 "$DURATION" "$CROP" "?detect=false"
fi

# 3. Slow clients: 32 normal clients with and without 100 slowloris connections.
if has slow; then
  start_server
  run "no slowloris" "default" 32 "$DURATION" "$ASTRONAUT"
  python3 bench/slowloris.py "127.0.0.1:$PORT" --connections 100 --seconds "$((DURATION + 5))" > "$OUT/slowloris.txt" &
  SLOW=$!
  sleep 3
  run "100 slowloris" "default" 32 "$DURATION" "$ASTRONAUT"
  wait "$SLOW" || true
  cat "$OUT/slowloris.txt" >&2
fi

# 4. The long run: RSS after the first minute and at the end.
if has long && [ "$LONG" -gt 0 ]; then
  start_server
  ( sleep 60; rss_kb > "$OUT/rss-1min.txt"; while sleep 60; do rss_kb >> "$OUT/rss-samples.txt" 2>/dev/null || break; done ) &
  SAMPLER=$!
  run "long" "default" 32 "$LONG" "$ASTRONAUT"
  kill "$SAMPLER" 2>/dev/null || true
fi
stop_server

python3 - "$OUT" <<'PY' | tee "$OUT/serve-load.md"
import json, os, sys
out = sys.argv[1]
rows = [json.loads(l) for l in open(f"{out}/runs.jsonl")]
print("| run | server flags | clients | photo | req/s | faces/s | p50 / p95 / p99 ms (all) | p50 / p95 / p99 ms (200s, server) | answers by status | socket errors | RSS start → end MB |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    st = ", ".join(f"{k}: {v}" for k, v in sorted(r["statuses"].items()))
    se = sum(r["socket_errors"].values())
    print(f"| {r['label']} | {r['flags']} | {r['clients']} | {r['photo']} | {r['requests_per_s']:.1f} | {r['faces_per_s']:.1f} | "
          f"{r['p50_ms']:.0f} / {r['p95_ms']:.0f} / {r['p99_ms']:.0f} | {r['accepted_p50_ms']:.0f} / {r['accepted_p95_ms']:.0f} / {r['accepted_p99_ms']:.0f} | "
          f"{st} | {se} | {r['rss_start_mb']:.0f} → {r['rss_end_mb']:.0f} |")
if os.path.exists(f"{out}/rss-1min.txt"):
    first = int(open(f"{out}/rss-1min.txt").read().split()[0]) / 1024
    end = [r for r in rows if r["label"] == "long"][-1]["rss_end_mb"]
    print(f"\nLong run: RSS {first:.0f} MB after the first minute, {end:.0f} MB at the end ({(end / first - 1) * 100:+.1f}%).")
if os.path.exists(f"{out}/slowloris.txt"):
    print("\nSlow clients: " + open(f"{out}/slowloris.txt").read().strip())
PY
