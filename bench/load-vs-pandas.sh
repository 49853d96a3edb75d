#!/usr/bin/env bash
# Loading speed: fer (CSV and image tree) against pandas read_csv + numpy, in one command.
#   bash bench/load-vs-pandas.sh [IMAGE_TREE]      (default ../shared/fer2013)
set -euo pipefail
cd "$(dirname "$0")/.."
tree=$(cd "${1:-../shared/fer2013}" && pwd)
if [ ! -x bench/.venv/bin/python ]; then python3 -m venv bench/.venv; fi
bench/.venv/bin/python -c "import pandas" 2>/dev/null || bench/.venv/bin/pip install -q numpy pandas
cargo build --release -q -p fer-cli
csv=$(mktemp -d)/fer2013.csv
./target/release/fer data convert "$tree" "$csv"
FER_BENCH_CSV="$csv" FER_BENCH_TREE="$tree" cargo bench -q -p fer-data --bench data -- load 2>&1 | grep -E "^load/|time:" | tee /tmp/fer-load-bench.txt
bench/.venv/bin/python bench/pandas_load.py "$csv" --repeat 3 | tee /tmp/pandas-load.json
bench/.venv/bin/python - <<'PY'
import json, re
text = open("/tmp/fer-load-bench.txt").read()
def secs(name):
    m = re.search(name + r"\s*\n?\s*time:\s*\[\S+ \S+ (\S+) (\S+)", text)
    v, unit = float(m.group(1)), m.group(2)
    return v * {"s": 1, "ms": 1e-3, "µs": 1e-6}[unit]
csv_s, tree_s = secs("load/fer2013_csv"), secs("load/image_tree")
pandas_s = json.load(open("/tmp/pandas-load.json"))["seconds"]
print(f"fer CSV {csv_s:.3f} s, fer image tree {tree_s:.3f} s, pandas CSV {pandas_s:.3f} s: fer is {pandas_s/csv_s:.1f}x faster on the CSV")
PY
