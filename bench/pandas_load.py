"""The pandas reference for loading fer2013.csv: read_csv plus per-row numpy parsing of pixels.

  python bench/pandas_load.py FER2013_CSV [--repeat N]   -> prints seconds per load (best of N) as JSON
"""
import json
import sys
import time

import numpy as np
import pandas as pd


def load(path):
    df = pd.read_csv(path)
    pixels = np.stack([np.array(row.split(), dtype=np.uint8) for row in df["pixels"]])
    return df["emotion"].to_numpy(), pixels.reshape(-1, 48, 48), df["Usage"].to_numpy()


def main():
    path = sys.argv[1]
    repeat = int(sys.argv[sys.argv.index("--repeat") + 1]) if "--repeat" in sys.argv else 3
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        labels, pixels, usage = load(path)
        best = min(best, time.perf_counter() - t)
    print(json.dumps({"impl": f"pandas {pd.__version__} + numpy", "faces": int(len(labels)), "seconds": best}))


if __name__ == "__main__":
    main()
