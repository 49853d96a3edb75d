"""Per-frame time of `fer serve` at webcam sizes, against OpenCV's face detector in the same run.

Makes three frames from the fixture photos (a 640x480 and a 1280x720 webcam frame with the
astronaut's face, and a 4000x1750 photo of the three faces), then for each: POSTs it REPEAT times
to a running `fer serve` (medians of its Server-Timing decode / detect / classify and of the
whole request as the client sees it) and runs OpenCV's Haar frontal-face cascade on it (decode
and detectMultiScale, medians; the model file ships with opencv-python-headless).

    python3 bench/webcam_frames.py --server 127.0.0.1:8049 [--repeat 15] [--out DIR]
"""

import argparse
import json
import os
import statistics
import time
import urllib.request

import cv2
import numpy as np

ROOT = os.path.join(os.path.dirname(__file__), "..")


def frames(out):
    """(name, path) of the three test frames, written as JPEG q85 (what the page sends)."""
    face = cv2.imread(os.path.join(ROOT, "fixtures/photos/astronaut.jpg"))
    three = cv2.imread(os.path.join(ROOT, "fixtures/photos/three-faces.jpg"))
    made = []
    for name, (w, h), side in [("webcam 640x480", (640, 480), 360), ("webcam 1280x720", (1280, 720), 600)]:
        frame = np.full((h, w, 3), 90, np.uint8)
        scaled = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
        x, y = (w - side) // 2, (h - side) // 2
        frame[y:y + side, x:x + side] = scaled
        made.append((name, frame))
    # The page sends a 1280x720 camera's frames at 640x360 (a quarter of the pixels).
    made.append(("webcam 1280x720 as the page sends it (640x360)", cv2.resize(made[1][1], (640, 360), interpolation=cv2.INTER_AREA)))
    made.append(("photo 4000x1750", cv2.resize(three, (4000, 1750), interpolation=cv2.INTER_CUBIC)))
    paths = []
    for name, image in made:
        path = os.path.join(out, name.split(" (")[0].replace(" ", "-") + ".jpg")
        cv2.imwrite(path, image, [cv2.IMWRITE_JPEG_QUALITY, 85])
        paths.append((name, path))
    return paths


def fer_times(server, data, repeat, query=""):
    timings, totals, faces = {}, [], None
    for _ in range(repeat):
        request = urllib.request.Request(f"http://{server}/api/predict{query}", data=data, method="POST")
        start = time.perf_counter()
        with urllib.request.urlopen(request) as response:
            body = json.load(response)
            header = response.headers.get("Server-Timing", "")
        totals.append((time.perf_counter() - start) * 1e3)
        faces = len(body["faces"])
        for part in header.split(","):
            name, dur = part.strip().split(";dur=")
            timings.setdefault(name, []).append(float(dur))
    medians = {k: statistics.median(v) for k, v in timings.items()}
    return faces, medians, statistics.median(totals)


def opencv_times(data, repeat):
    cascade = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml"))
    decode, detect, faces = [], [], 0
    buffer = np.frombuffer(data, np.uint8)
    for _ in range(repeat):
        start = time.perf_counter()
        image = cv2.imdecode(buffer, cv2.IMREAD_GRAYSCALE)
        decode.append((time.perf_counter() - start) * 1e3)
        start = time.perf_counter()
        found = cascade.detectMultiScale(image, scaleFactor=1.1, minNeighbors=5, minSize=(20, 20))
        detect.append((time.perf_counter() - start) * 1e3)
        faces = len(found)
    return faces, statistics.median(decode), statistics.median(detect)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--out", default="target/webcam-frames")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    print(f"OpenCV {cv2.__version__}, {cv2.getNumThreads()} threads; medians of {args.repeat}")
    print("| frame | detector | faces | decode ms | detect ms | classify ms | whole request ms | detect / OpenCV's |")
    print("|---|---|---|---|---|---|---|---|")
    for name, path in frames(args.out):
        data = open(path, "rb").read()
        cv_faces, cv_decode, cv_detect = opencv_times(data, args.repeat)
        for label, query in [("fer, min face 40 (default)", ""), ("fer, min face 60 (the page's webcam frames)", "?min_face=60")]:
            faces, t, total = fer_times(args.server, data, args.repeat, query)
            print(f"| {name} | {label} | {faces} | {t.get('decode', 0):.1f} | {t.get('detect', 0):.1f} | {t.get('classify', 0):.1f} | "
                  f"{total:.1f} | {t.get('detect', 0) / cv_detect:.2f} |")
        print(f"| {name} | OpenCV Haar cascade (minSize 20) | {cv_faces} | {cv_decode:.1f} | {cv_detect:.1f} | | | 1 |")


if __name__ == "__main__":
    main()
