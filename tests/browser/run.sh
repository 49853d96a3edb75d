#!/usr/bin/env bash
# The browser checks. `fer serve`: trains a tiny model (or uses RUN=folder), starts the server on
# a free port, and drives the page in headless Chromium (serve-page.mjs). Skips, successfully,
# where Chromium or Node.js is missing, unless REQUIRE_BROWSER=1.
# Usage: tests/browser/run.sh [path/to/fer]   (default: target/debug/fer)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
fer="${1:-$root/target/debug/fer}"
chromium="${CHROMIUM:-/usr/bin/chromium}"
if [[ ! -x "$chromium" ]] || ! command -v node >/dev/null; then
  [[ "${REQUIRE_BROWSER:-0}" == 1 ]] && { echo "browser check: Chromium ($chromium) or node missing" >&2; exit 1; }
  echo "browser check skipped: no Chromium at $chromium or no node"
  exit 0
fi
[[ -d "$here/node_modules/playwright-core" ]] || (cd "$here" && npm ci --no-audit --no-fund --silent)
work="$(mktemp -d)"
trap 'kill "${server:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
run="${RUN:-}"
if [[ -z "$run" ]]; then
  run="$work/run"
  "$fer" train --data synthetic:10,3,1 --model tiny-cnn --out "$run" --epochs 1 --steps-per-epoch 0 --batch-size 35 --quiet >/dev/null
fi
"$fer" serve --run "$run" --port 0 > "$work/serve.log" 2>&1 &
server=$!
for _ in $(seq 100); do grep -q "http://" "$work/serve.log" && break; sleep 0.1; done
url="$(grep -o 'http://[^ ]*' "$work/serve.log" | head -1)"
[[ -n "$url" ]] || { echo "fer serve did not start:" >&2; cat "$work/serve.log" >&2; exit 1; }
out="${SCREENSHOT:-$root/target/browser-check.png}"
mkdir -p "$(dirname "$out")"
node "$here/serve-page.mjs" "$url" "$root/fixtures/photos/three-faces.jpg" 3 "$out"

# The HTML report: the smoke profile of `cargo xtask reproduce-report` (about a minute in a debug
# build), or REPORT=folder of an existing report. Skipped when no xtask binary was built.
xtask="${XTASK:-$root/target/debug/xtask}"
report="${REPORT:-}"
if [[ -z "$report" && -x "$xtask" ]]; then
  report="$work/report"
  "$xtask" reproduce-report --profile smoke --out "$report" >"$work/report.log" 2>&1 || { cat "$work/report.log" >&2; exit 1; }
fi
if [[ -n "$report" ]]; then
  node "$here/report-page.mjs" "$report" "${REPORT_SCREENSHOT:-$root/target/report-check.png}"
else
  echo "report check skipped: no $xtask (build it with cargo build -p xtask)"
fi
