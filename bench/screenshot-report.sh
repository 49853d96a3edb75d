#!/usr/bin/env bash
# Opens a report's index.html in headless Chromium, fails on console errors or missing images, and
# writes a screenshot.   bash bench/screenshot-report.sh REPORT_DIR [OUT.png]
# Needs Debian's chromium (apt-get install chromium).
set -euo pipefail
dir=$(cd "$1" && pwd)
out=${2:-$dir/screenshot.png}
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
       --disable-component-update --disable-sync --user-data-dir="$(mktemp -d)" --hide-scrollbars)
log=$(mktemp)
chromium "${flags[@]}" --enable-logging=stderr --v=0 --window-size=1100,2400 --screenshot="$out" "file://$dir/index.html" 2>"$log" || true
# Every <img> must exist beside the page.
missing=0
for src in $(grep -o '<img src="[^"]*"' "$dir/index.html" | sed 's/<img src="//; s/"$//'); do
  [ -f "$dir/$src" ] || { echo "missing image: $src"; missing=1; }
done
if grep -E "Uncaught|ERR_FILE_NOT_FOUND|Failed to load resource" "$log"; then echo "console errors (above)"; exit 1; fi
[ "$missing" = 0 ] || exit 1
[ -s "$out" ] || { echo "no screenshot written"; cat "$log"; exit 1; }
echo "screenshot: $out ($(grep -c '<img ' "$dir/index.html") images, no console errors)"
